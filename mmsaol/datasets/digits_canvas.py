"""The embedded demo data set: real handwritten digits placed on a canvas."""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import shutil
import tempfile
import uuid
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..checks import check_choice

SPLITS = ('train', 'val', 'test')
#: Transforms that read ``img_path``: they need the PNG cache (``data_root``).
FILE_LOADERS = ('LoadImageFromFile', )


def _draw_distractors(canvas: np.ndarray, rng: np.random.Generator,
                      count: int) -> None:
    """Random thin pen strokes (short polylines) and blobs, drawn in place,
    dimmer than the digits on average."""
    size = canvas.shape[0]
    for _ in range(count):
        value = int(rng.integers(60, 180))
        if rng.random() < 0.7:
            points = rng.integers(0, size, size=(int(rng.integers(2, 4)), 2))
            points = points.astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [points], False, value, thickness=1)
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, size=2))
            cv2.circle(canvas, centre, int(rng.integers(1, 4)), value, -1)


def render_canvas(digit: np.ndarray, rng: np.random.Generator,
                  canvas_size: int, digit_size: Tuple[int, int],
                  distractors: int, noise: float
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Place one 8x8 digit (values 0..16) on a noisy canvas.

    Returns:
        Tuple[np.ndarray, np.ndarray]: ``(canvas_size, canvas_size, 3)``
        uint8 image and the digit's tight box ``(x1, y1, x2, y2)`` in pixels
        (half-open), float32.
    """
    side = int(rng.integers(digit_size[0], digit_size[1] + 1))
    glyph = cv2.resize((digit * (255.0 / 16.0)).astype(np.float32),
                       (side, side), interpolation=cv2.INTER_LINEAR)
    x0, y0 = (int(v) for v in rng.integers(0, canvas_size - side + 1, size=2))
    canvas = np.zeros((canvas_size, canvas_size), np.float32)
    _draw_distractors(canvas, rng, distractors)
    region = canvas[y0:y0 + side, x0:x0 + side]
    np.maximum(region, glyph, out=region)
    canvas += rng.normal(0.0, noise * 255.0, canvas.shape)
    ys, xs = np.nonzero(glyph > 32)
    box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1,
                    y0 + ys.max() + 1], dtype=np.float32)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    return np.repeat(image[:, :, None], 3, axis=2), box


@DATASETS.register_module()
class DigitsCanvas(BaseDataset):
    """Handwritten digits at random places on a cluttered canvas.

    Real images that ship inside a pip-installable package: scikit-learn's
    1,797 handwritten 8x8 digits (UCI), each scaled to ``digit_size`` pixels
    and pasted at a random position of a ``canvas_size`` square with
    distractor strokes, blobs and Gaussian noise. The digit's tight bounding
    box is recorded as ``gt_bbox`` (``x1, y1, x2, y2``), so the set also
    serves weakly-supervised localisation.

    The source digits are split once by a fixed permutation: the training
    split and the validation/test splits never share a source digit. Given
    the same arguments the images are identical on every machine (NumPy's
    PCG64 generator, seeded); building the default splits takes about a
    second, with no download.

    Every item carries its canvas as ``img`` (for pipelines without a
    loading step) and, with ``data_root`` set, as the PNG file ``img_path``
    (for ``LoadImageFromFile``, so a config reads files as for any image
    data set, and mmpretrain's inferencer and tools take any image file
    through the same test pipeline). The files are written once, into
    ``data_root/<split>-<digest>/`` where the digest is that of the
    rendered pixels: other arguments give other folders, and a folder that
    exists holds exactly these canvases (it is written under a temporary
    name and renamed when complete, so processes building the same split
    at once do not see half a folder).

    Args:
        split (str): ``'train'``, ``'val'`` or ``'test'`` (``'test'`` is the
            validation split under another name, as mmpretrain's test
            loaders expect one).
        canvas_size (int): Side of the square canvas. Defaults to 40.
        digit_size (Tuple[int, int]): Range of the scaled digit's side.
            Defaults to ``(16, 24)``.
        copies (int, optional): Canvases rendered per source digit. Defaults
            to 3 for training and 2 otherwise.
        distractors (int): Strokes/blobs per canvas. Defaults to 3.
        noise (float): Gaussian noise std as a fraction of 255. Defaults to
            0.05.
        val_fraction (float): Fraction of source digits held out for the
            validation split. Defaults to 0.3.
        seed (int): Seed of the rendering. Defaults to 0.
        data_root (str): Folder of the PNG cache. Defaults to ``''``: no
            files, the canvases are kept in memory only (no ``img_path``).
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``
            (``pipeline``, ``test_mode``, ``indices``...).
    """

    METAINFO = {'classes': tuple(str(i) for i in range(10))}

    def __init__(self,
                 split: str = 'train',
                 canvas_size: int = 40,
                 digit_size: Sequence[int] = (16, 24),
                 copies: Optional[int] = None,
                 distractors: int = 3,
                 noise: float = 0.05,
                 val_fraction: float = 0.3,
                 seed: int = 0,
                 data_root: str = '',
                 **kwargs) -> None:
        check_choice(split, SPLITS, 'DigitsCanvas.split')
        if not 8 <= digit_size[0] <= digit_size[1] <= canvas_size:
            raise ValueError(
                f'DigitsCanvas.digit_size={tuple(digit_size)} must satisfy '
                f'8 <= min <= max <= canvas_size={canvas_size}.')
        if not 0 < val_fraction < 1:
            raise ValueError('DigitsCanvas.val_fraction must be in (0, 1), '
                             f'got {val_fraction}.')
        self.split = split
        self.canvas_size = canvas_size
        self.digit_size = (int(digit_size[0]), int(digit_size[1]))
        self.copies = copies if copies is not None else (
            3 if split == 'train' else 2)
        if self.copies < 1:
            raise ValueError(f'DigitsCanvas.copies must be >= 1, got '
                             f'{self.copies}.')
        self.distractors = distractors
        self.noise = noise
        self.val_fraction = val_fraction
        self.seed = seed
        indices = kwargs.get('indices')
        if indices is not None and (
                (isinstance(indices, int) and indices < 1)
                or (not isinstance(indices, int) and len(indices) == 0)):
            raise ValueError(
                f'DigitsCanvas(split={split!r}): indices={indices!r} selects '
                'no image; give a positive count (the first N images) or a '
                'non-empty list of indices, or remove indices.')
        if not data_root and _reads_files(kwargs.get('pipeline') or []):
            raise ValueError(
                f'DigitsCanvas(split={split!r}) has a pipeline that reads '
                'image files (LoadImageFromFile) but no data_root to cache '
                "the canvases in: set data_root (e.g. 'data/digits_canvas') "
                'or drop the loading transform.')
        kwargs.setdefault('test_mode', split != 'train')
        super().__init__(ann_file='', data_root=data_root, **kwargs)

    def source_indices(self) -> np.ndarray:
        """Indices into scikit-learn's digits used by this split."""
        from sklearn.datasets import load_digits
        total = len(load_digits().target)
        order = np.random.default_rng(12345).permutation(total)
        n_val = int(round(total * self.val_fraction))
        return np.sort(order[:total - n_val] if self.split == 'train'
                       else order[total - n_val:])

    def load_data_list(self) -> List[dict]:
        """Render the canvases of this split (and cache them as PNG files
        when ``data_root`` is set)."""
        from sklearn.datasets import load_digits
        digits = load_digits()
        split_offset = SPLITS.index(self.split) if self.split != 'test' else 1
        rng = np.random.default_rng([self.seed, split_offset])
        data_list = []
        for index in self.source_indices():
            for _ in range(self.copies):
                image, box = render_canvas(
                    digits.images[index], rng, self.canvas_size,
                    self.digit_size, self.distractors, self.noise)
                data_list.append(dict(img=image,
                                      img_shape=image.shape[:2],
                                      ori_shape=image.shape[:2],
                                      gt_label=int(digits.target[index]),
                                      gt_bbox=box,
                                      source_index=int(index)))
        if self.data_root:
            folder = self.cache_folder([d['img'] for d in data_list])
            for i, info in enumerate(data_list):
                info['img_path'] = osp.join(folder, _file_name(i))
        return data_list

    def cache_folder(self, images: Sequence[np.ndarray]) -> str:
        """The PNG folder of these canvases under ``data_root``, written if
        it does not exist yet (or misses files)."""
        digest = hashlib.sha1()
        for image in images:
            digest.update(np.ascontiguousarray(image[:, :, 0]).data)
        family = 'train' if self.split == 'train' else 'val'
        folder = osp.join(self.data_root,
                          f'{family}-{digest.hexdigest()[:16]}')
        if not _complete(folder, len(images)):
            _write_folder(folder, images)
        return folder


def _reads_files(pipeline: Sequence) -> bool:
    """Whether a pipeline (configs or built transforms) loads image files."""
    for transform in pipeline:
        kind = transform.get('type') if isinstance(transform, dict) \
            else type(transform)
        if kind in FILE_LOADERS or (isinstance(kind, type) and issubclass(
                kind, LoadImageFromFile)):
            return True
    return False


def _file_name(index: int) -> str:
    return f'{index:05d}.png'


def _complete(folder: str, count: int) -> bool:
    return osp.isdir(folder) and all(
        osp.isfile(osp.join(folder, _file_name(i))) for i in range(count))


def _write_folder(folder: str, images: Sequence[np.ndarray]) -> None:
    """Write the canvases (one grey channel each: the three channels are
    equal) under a temporary name, then rename the folder into place."""
    parent = osp.dirname(osp.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=osp.basename(folder) + '.tmp-',
                               dir=parent)
    stale = None
    try:
        for i, image in enumerate(images):
            if not cv2.imwrite(osp.join(staging, _file_name(i)),
                               image[:, :, 0]):
                raise OSError(f'Could not write the DigitsCanvas cache in '
                              f'{parent}: check that it is writable.')
        if osp.isdir(folder):  # incomplete: replace it
            stale = f'{folder}.stale-{uuid.uuid4().hex}'
            try:
                os.rename(folder, stale)
            except OSError:
                stale = None
        try:
            os.rename(staging, folder)
        except OSError:
            if not _complete(folder, len(images)):
                raise
            # another process put the same canvases there first
    finally:
        for leftover in (staging, stale):
            if leftover and osp.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
