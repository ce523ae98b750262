"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) on disk: the four idx
files where mmpretrain's ``FashionMNIST`` reads them, and as arrays."""
from __future__ import annotations

import gzip
import os
import os.path as osp
import shutil
from typing import Sequence, Tuple

import numpy as np

FASHION_MNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
                       't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
#: Where Debian's ``dataset-fashion-mnist`` package puts the gzipped files.
FASHION_MNIST_DEBIAN = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_URL = \
    'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
#: Default folder of the un-gzipped files (the study configs' data_root).
FASHION_MNIST_ROOT = osp.join('data', 'fashion-mnist')


def prepare_fashion_mnist(dest: str = FASHION_MNIST_ROOT,
                          sources: Sequence[str] = (FASHION_MNIST_DEBIAN, )
                          ) -> str:
    """Put the four Fashion-MNIST idx files, un-gzipped, in ``dest`` (what
    mmpretrain's ``FashionMNIST`` reads); a no-op when they are there.

    The gzipped files are looked for in ``sources`` (Debian's
    ``dataset-fashion-mnist`` package installs them in
    ``/usr/share/datasets/fashion-mnist``) and in ``dest`` itself.

    Args:
        dest (str): Folder of the un-gzipped files. Defaults to
            ``data/fashion-mnist``.
        sources (Sequence[str]): Folders holding the ``.gz`` files.

    Returns:
        str: ``dest``.
    """
    missing = [n for n in FASHION_MNIST_FILES
               if not osp.isfile(osp.join(dest, n))]
    for name in missing:
        found = [osp.join(d, name + '.gz') for d in (*sources, dest)
                 if osp.isfile(osp.join(d, name + '.gz'))]
        if not found:
            raise FileNotFoundError(
                f'Fashion-MNIST file {name}(.gz) is in none of '
                f'{[*sources, dest]}: install it with `apt-get install '
                'dataset-fashion-mnist` (Debian/Ubuntu) or download the four '
                f'.gz files from {FASHION_MNIST_URL} into {dest}.')
        os.makedirs(dest, exist_ok=True)
        with gzip.open(found[0]) as src, \
                open(osp.join(dest, name) + '.tmp', 'wb') as out:
            shutil.copyfileobj(src, out)
        os.replace(osp.join(dest, name) + '.tmp', osp.join(dest, name))
    return dest


def _read_idx(path: str, header: int) -> np.ndarray:
    with open(path, 'rb') as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_fashion_mnist(split: str, root: str = FASHION_MNIST_ROOT
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """One split of Fashion-MNIST as arrays (preparing ``root`` first).

    Args:
        split (str): ``'train'`` (60,000 images) or ``'test'`` (10,000).
        root (str): Folder of the un-gzipped idx files.

    Returns:
        Tuple[np.ndarray, np.ndarray]: ``(N, 28, 28)`` uint8 images and
        ``(N,)`` int64 labels.
    """
    if split not in ('train', 'test'):
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', "
                         f'got {split!r}.')
    prepare_fashion_mnist(root)
    prefix = 'train' if split == 'train' else 't10k'
    images = _read_idx(osp.join(root, f'{prefix}-images-idx3-ubyte'), 16)
    labels = _read_idx(osp.join(root, f'{prefix}-labels-idx1-ubyte'), 8)
    return images.reshape(-1, 28, 28), labels.astype(np.int64)
