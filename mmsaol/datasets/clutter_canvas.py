"""Clutter canvas: a localisation-heavy task made of real images.

One Fashion-MNIST garment (Xiao et al., 2017), scaled so that its longer
side is a quarter to a half of the canvas side, is pasted at a random place
of a larger grey canvas among crops of other garments. The crops are
partial (a window of a third to two thirds of a source image's side, of
another class than the object's), so the one whole garment is the object
and the rest is real-image clutter with the same texture and edges. Each
canvas records the object's class, its tight box and its mask (the
object's pixels), and is written (by :func:`write_wsol_metadata`) in the
metadata layout of the standard weakly-supervised localisation protocol
(Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020):

    <root>/
    ├── images/<split>/<index>.png        canvases, one grey channel
    ├── masks/<split>/<index>.png         object pixels 255, the rest 0
    ├── metadata/<split>/image_ids.txt    images/<split>/<index>.png
    ├── metadata/<split>/class_labels.txt <image id>,<label>
    ├── metadata/<split>/image_sizes.txt  <image id>,<width>,<height>
    ├── metadata/<split>/localization.txt <image id>,x0,y0,x1,y1
    ├── metadata-masks/<split>/...        the same, with localization.txt
    │                                     <image id>,<mask png>,
    └── clutter_canvas.json               the arguments and a pixel digest

Boxes are inclusive pixel boxes (``0 <= x0 <= x1 <= width - 1``, as the
protocol's metadata holds them); the protocol keeps boxes and masks in
separate metadata folders (CUB/ILSVRC and OpenImages), and so does this
set. The three splits come from disjoint source images, objects and
clutter alike: ``train`` and ``val`` from two disjoint parts of
Fashion-MNIST's training set (the validation split is for choosing
hyper-parameters), ``test`` from its test set. The same arguments give the
same pixels on every machine (NumPy's PCG64, seeded; OpenCV's bilinear
resize).

What it tests: a classifier must find the one whole garment among pieces
of others (a global average of every location mixes the clutter's evidence
into the score), and its maps can be scored for localisation by box
(MaxBoxAcc, MaxBoxAccV2) and by pixel (PxAP) against the recorded box and
mask.

    python -m mmsaol study --prepare clutter-canvas   # data/clutter-canvas
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .fashion_mnist import FASHION_MNIST_ROOT, load_fashion_mnist
from .wsol_metadata import WSOLRecord, write_wsol_metadata

CLUTTER_CANVAS_ROOT = osp.join('data', 'clutter-canvas')
#: Canvases per split (one per object source image).
DEFAULT_COUNTS = {'train': 4000, 'val': 1000, 'test': 3000}
#: Fashion-MNIST training images held out for ``val`` (objects and clutter).
VAL_POOL = 10000
#: Pixel value above which a scaled garment pixel counts as the object's.
MASK_THRESHOLD = 24


def _content_box(image: np.ndarray) -> Tuple[int, int, int, int]:
    """Tight half-open box ``x0, y0, x1, y1`` of a garment's pixels."""
    ys, xs = np.nonzero(image > MASK_THRESHOLD)
    if len(xs) == 0:
        return 0, 0, image.shape[1], image.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, \
        int(ys.max()) + 1


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Inclusive box ``x0, y0, x1, y1`` (int64) of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.int64)


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape
    size = (max(1, int(round(width * scale))),
            max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def render_clutter_canvas(obj: np.ndarray, pieces: Sequence[np.ndarray],
                          rng: np.random.Generator, canvas_size: int,
                          object_size: Tuple[int, int],
                          crop_fraction: Tuple[float, float],
                          noise: float
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One canvas: clutter crops of ``pieces``, then the object on top.

    Args:
        obj (np.ndarray): The object's 28x28 uint8 image.
        pieces (Sequence[np.ndarray]): 28x28 uint8 images to crop clutter
            from (other classes than the object's).
        rng (np.random.Generator): Draws sizes, crops and places.
        canvas_size (int): Side of the square canvas.
        object_size (Tuple[int, int]): Range of the object's longer side.
        crop_fraction (Tuple[float, float]): Range of a clutter window's
            side, as a fraction of its source garment's box.
        noise (float): Gaussian noise std as a fraction of 255.

    Returns:
        Tuple[np.ndarray, np.ndarray, np.ndarray]: the uint8
        ``(canvas_size, canvas_size)`` canvas, the object's bool mask of the
        same shape, and its tight box ``x0, y0, x1, y1`` (inclusive, int).
    """
    x0, y0, x1, y1 = _content_box(obj)
    side = int(rng.integers(object_size[0], object_size[1] + 1))
    scale = side / max(x1 - x0, y1 - y0)
    glyph = _scaled(obj[y0:y1, x0:x1], scale)
    canvas = np.zeros((canvas_size, canvas_size), np.float32)
    for piece in pieces:
        px0, py0, px1, py1 = _content_box(piece)
        width = max(2, int(round((px1 - px0) * rng.uniform(*crop_fraction))))
        height = max(2, int(round((py1 - py0) *
                                  rng.uniform(*crop_fraction))))
        cx = int(rng.integers(px0, px1 - width + 1))
        cy = int(rng.integers(py0, py1 - height + 1))
        crop = _scaled(piece[cy:cy + height, cx:cx + width],
                       rng.uniform(0.8, 1.2) * scale).astype(np.float32)
        crop = crop[:canvas_size, :canvas_size]
        ox = int(rng.integers(0, canvas_size - crop.shape[1] + 1))
        oy = int(rng.integers(0, canvas_size - crop.shape[0] + 1))
        region = canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]]
        np.maximum(region, crop, out=region)
    height, width = glyph.shape
    ox = int(rng.integers(0, canvas_size - width + 1))
    oy = int(rng.integers(0, canvas_size - height + 1))
    mask = np.zeros((canvas_size, canvas_size), bool)
    mask[oy:oy + height, ox:ox + width] = glyph > MASK_THRESHOLD
    # The object is opaque: on its pixels it hides the clutter.
    canvas[mask] = glyph[glyph > MASK_THRESHOLD]
    canvas += rng.normal(0.0, noise * 255.0, canvas.shape)
    box = mask_box(mask)
    return np.clip(canvas, 0, 255).astype(np.uint8), mask, box


def source_pools(seed: int = 0, source: str = FASHION_MNIST_ROOT,
                 val_pool: int = VAL_POOL
                 ) -> Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The disjoint source images of each split: ``{split: (images,
    labels, indices)}`` with the indices into Fashion-MNIST's training
    (``train``, ``val``) or test set (``test``); ``train`` and ``val``
    split the training set by a seeded permutation (``val`` gets
    ``val_pool`` images)."""
    images, labels = load_fashion_mnist('train', source)
    order = np.random.default_rng([seed, 1]).permutation(len(labels))
    if not 0 < val_pool < len(labels):
        raise ValueError(f'Clutter canvas: val_pool={val_pool} must be '
                         f'between 0 and the {len(labels)} training images.')
    test_images, test_labels = load_fashion_mnist('test', source)
    train, val = order[val_pool:], order[:val_pool]
    return {'train': (images[train], labels[train], train),
            'val': (images[val], labels[val], val),
            'test': (test_images, test_labels, np.arange(len(test_labels)))}


def render_split(images: np.ndarray, labels: np.ndarray, count: int,
                 rng: np.random.Generator, canvas_size: int = 64,
                 object_size: Tuple[int, int] = (16, 32),
                 clutter: Tuple[int, int] = (3, 6),
                 crop_fraction: Tuple[float, float] = (0.35, 0.65),
                 noise: float = 0.03) -> dict:
    """``count`` canvases from one pool: the first ``count`` images are the
    objects, clutter comes from any image of the pool of another class.

    Returns:
        dict: ``images`` (N, S, S) uint8, ``masks`` (N, S, S) bool,
        ``boxes`` (N, 4) int, ``labels`` (N,), ``objects`` (N,) and
        ``clutter`` (list of index arrays), indices into the pool.
    """
    if count > len(labels):
        raise ValueError(f'Clutter canvas: {count} canvases need as many '
                         f'source images, the pool has {len(labels)}.')
    out = dict(images=[], masks=[], boxes=[], labels=labels[:count].copy(),
               objects=np.arange(count), clutter=[])
    for index in range(count):
        others = np.flatnonzero(labels != labels[index])
        chosen = rng.choice(others, int(rng.integers(clutter[0],
                                                     clutter[1] + 1)),
                            replace=False)
        image, mask, box = render_clutter_canvas(
            images[index], images[chosen], rng, canvas_size, object_size,
            crop_fraction, noise)
        out['images'].append(image)
        out['masks'].append(mask)
        out['boxes'].append(box)
        out['clutter'].append(chosen)
    for key in ('images', 'masks', 'boxes'):
        out[key] = np.stack(out[key])
    return out


def write_split(root: str, split: str, data: dict) -> None:
    """Write one split's PNGs under ``root`` and its WSOL metadata (boxes in
    ``metadata/<split>``, masks in ``metadata-masks/<split>``) with
    :func:`write_wsol_metadata`."""
    for folder in ('images', 'masks'):
        os.makedirs(osp.join(root, folder, split), exist_ok=True)
    boxed, masked = [], []
    for index, (image, mask, box, label) in enumerate(zip(
            data['images'], data['masks'], data['boxes'], data['labels'])):
        image_id = f'images/{split}/{index:05d}.png'
        mask_id = f'masks/{split}/{index:05d}.png'
        for path, pixels in ((image_id, image), (mask_id, mask * 255)):
            if not cv2.imwrite(osp.join(root, path),
                               pixels.astype(np.uint8)):
                raise OSError(f'Could not write {osp.join(root, path)}: '
                              'check that the folder is writable.')
        size = (image.shape[1], image.shape[0])
        boxed.append(WSOLRecord(image_id, int(label), size,
                                boxes=[tuple(int(v) for v in box)]))
        masked.append(WSOLRecord(image_id, int(label), size,
                                 masks=[mask_id]))
    write_wsol_metadata(osp.join(root, 'metadata'), split, boxed)
    write_wsol_metadata(osp.join(root, 'metadata-masks'), split, masked)


def prepare_clutter_canvas(dest: str = CLUTTER_CANVAS_ROOT,
                           seed: int = 0,
                           counts: Optional[Dict[str, int]] = None,
                           canvas_size: int = 64,
                           object_size: Tuple[int, int] = (16, 32),
                           clutter: Tuple[int, int] = (3, 6),
                           noise: float = 0.03,
                           source: str = FASHION_MNIST_ROOT,
                           val_pool: int = VAL_POOL) -> str:
    """Write the clutter canvas data set into ``dest`` (see the module's
    docstring); a no-op when ``dest`` already holds it with the same
    arguments.

    Args:
        dest (str): Output folder. Defaults to ``data/clutter-canvas``.
        seed (int): Seed of the source split and the rendering.
        counts (Dict[str, int], optional): Canvases per split. Defaults to
            :data:`DEFAULT_COUNTS` (4,000 / 1,000 / 3,000).
        canvas_size (int): Canvas side in pixels. Defaults to 64.
        object_size (Tuple[int, int]): Range of the object's longer side.
            Defaults to ``(16, 32)``: a quarter to a half of 64.
        clutter (Tuple[int, int]): Range of the clutter crops per canvas.
        noise (float): Gaussian noise std as a fraction of 255.
        source (str): Folder of Fashion-MNIST's idx files (prepared from
            Debian's ``dataset-fashion-mnist`` package when missing).
        val_pool (int): Fashion-MNIST training images kept for ``val``
            (objects and clutter). Defaults to 10,000.

    Returns:
        str: ``dest``.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    if not 4 <= object_size[0] <= object_size[1] <= canvas_size:
        raise ValueError(
            f'Clutter canvas: object_size={tuple(object_size)} must satisfy '
            f'4 <= min <= max <= canvas_size={canvas_size}.')
    args = dict(seed=seed, counts=counts, canvas_size=canvas_size,
                object_size=list(object_size), clutter=list(clutter),
                noise=noise, source='fashion-mnist', val_pool=val_pool)
    info_path = osp.join(dest, 'clutter_canvas.json')
    if osp.isfile(info_path):
        with open(info_path) as f:
            if json.load(f).get('args') == args:
                return dest
    pools = source_pools(seed, source, val_pool)
    staging = dest.rstrip('/') + '.tmp'
    shutil.rmtree(staging, ignore_errors=True)
    digest = hashlib.sha1()
    for offset, split in enumerate(('train', 'val', 'test')):
        rng = np.random.default_rng([seed, 2, offset])
        data = render_split(*pools[split][:2], counts[split], rng,
                            canvas_size, tuple(object_size), tuple(clutter),
                            noise=noise)
        digest.update(data['images'].tobytes())
        write_split(staging, split, data)
    with open(osp.join(staging, 'clutter_canvas.json'), 'w') as f:
        json.dump(dict(args=args, sha1=digest.hexdigest()), f, indent=2)
        f.write('\n')
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging, dest)
    return dest
