"""The standard WSOL protocol as small pure functions.

"Evaluating Weakly Supervised Object Localization Methods Right" (Choe et
al., CVPR 2020, `arXiv:2001.07437 <https://arxiv.org/abs/2001.07437>`_;
journal version `arXiv:2007.04178 <https://arxiv.org/abs/2007.04178>`_)
defines the numbers the literature reports as MaxBoxAcc, MaxBoxAccV2 and
PxAP. Every step below is theirs, in their conventions:

1. Evaluation frame: the image is resized whole to ``224 x 224``; its
   boxes are scaled to that frame with each coordinate truncated to an
   integer (:func:`boxes_to_frame`); masks are resized with nearest
   neighbour (:func:`mask_to_frame`).
2. Score map: the map is resized to the frame with OpenCV's bicubic
   interpolation, then min-max normalised; a constant map, or one holding
   NaN, becomes all zeros (:func:`frame_scoremap`).
3. Thresholds ``tau`` in ``np.arange(0, 1, interval)``
   (:func:`threshold_list`); at each, the 8-bit map ``uint8(255 * map)``
   keeps the pixels strictly above ``int(tau * max)`` of the 8-bit map.
4. OpenCV contours of the kept pixels (``RETR_TREE``,
   ``CHAIN_APPROX_SIMPLE``); MaxBoxAcc (V1) keeps the contour of largest
   ``cv2.contourArea``, MaxBoxAccV2 every contour; no contour gives the box
   ``(0, 0, 0, 0)``. A contour's box is its ``cv2.boundingRect``
   ``(x, y, x + w, y + h)`` with ``x + w`` clipped to ``width - 1`` and
   ``y + h`` to ``height - 1`` (:func:`boxes_at_thresholds`).
5. IoU with inclusive pixels: a box ``(x0, y0, x1, y1)`` covers ``(x1 - x0
   + 1) * (y1 - y0 + 1)`` pixels (:func:`box_iou`). Per image and
   threshold, the best IoU over estimated x ground-truth boxes
   (:func:`best_box_ious`).
6. MaxBoxAcc(delta): the share of images whose best IoU reaches ``delta``,
   at the one threshold that is best for the whole split
   (:func:`max_box_acc`). V1 reports ``delta = 0.5``; V2 the mean over
   ``delta`` in ``{0.3, 0.5, 0.7}``.
7. PxAP: histograms of the normalised scores at foreground and background
   pixels (ignore pixels left out), pooled over the split, give the
   precision-recall curve whose area is PxAP (:func:`score_histograms`,
   :func:`pxap`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Side of the protocol's evaluation frame (pixels).
FRAME_SIZE = 224
#: IoU thresholds averaged by MaxBoxAccV2.
V2_IOUS = (0.3, 0.5, 0.7)


def threshold_list(interval: float) -> np.ndarray:
    """Score-map thresholds ``0, interval, 2 * interval, ... < 1``.

    Args:
        interval (float): The sweep step; the protocol's command line uses
            0.01, its training config 0.001.

    Returns:
        np.ndarray: ``np.arange(0, 1, interval)`` (float64).
    """
    if not 0 < interval < 1:
        raise ValueError('The threshold interval must be in (0, 1), got '
                         f'{interval}.')
    return np.arange(0, 1, interval)


def boxes_to_frame(boxes: np.ndarray, image_size: Sequence[int],
                   frame_size: Sequence[int] = (FRAME_SIZE, FRAME_SIZE)
                   ) -> np.ndarray:
    """Scale boxes of an image to the evaluation frame, each coordinate
    truncated to an integer (as the protocol resizes its boxes).

    Args:
        boxes (np.ndarray): ``(M, 4)`` (or ``(4,)``) boxes ``(x0, y0, x1,
            y1)`` in pixels of the image.
        image_size (Sequence[int]): ``(width, height)`` of the image.
        frame_size (Sequence[int]): ``(width, height)`` of the frame.
            Defaults to ``(224, 224)``.

    Returns:
        np.ndarray: ``(M, 4)`` int64 boxes in the frame.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([float(frame_size[0]) / float(image_size[0]),
                      float(frame_size[1]) / float(image_size[1])] * 2)
    return (boxes * scale).astype(np.int64)


def mask_to_frame(mask: np.ndarray,
                  frame_size: Sequence[int] = (FRAME_SIZE, FRAME_SIZE)
                  ) -> np.ndarray:
    """A mask image in the evaluation frame: nearest-neighbour resize,
    foreground where the value exceeds 0.5.

    Args:
        mask (np.ndarray): ``(H, W)`` grey-level mask (0/255 or 0/1).
        frame_size (Sequence[int]): ``(width, height)`` of the frame.

    Returns:
        np.ndarray: ``(height, width)`` bool mask.
    """
    resized = cv2.resize(np.asarray(mask, dtype=np.float32),
                         (int(frame_size[0]), int(frame_size[1])),
                         interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def normalize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to ``[0, 1]``; a map with NaN, or a constant
    map, becomes all zeros (no evidence anywhere).

    Args:
        scoremap (np.ndarray): ``(H, W)`` map.

    Returns:
        np.ndarray: float64 ``(H, W)`` map.
    """
    scoremap = np.array(scoremap, dtype=np.float64)
    if np.isnan(scoremap).any() or scoremap.min() == scoremap.max():
        return np.zeros_like(scoremap)
    scoremap -= scoremap.min()
    return scoremap / scoremap.max()


def frame_scoremap(heatmap: Union[Tensor, np.ndarray],
                   frame_size: Sequence[int] = (FRAME_SIZE, FRAME_SIZE)
                   ) -> np.ndarray:
    """A map as the protocol scores it: resized to the frame with OpenCV's
    bicubic interpolation (in float64), then :func:`normalize_scoremap`.

    Args:
        heatmap (Tensor | np.ndarray): ``(h, w)`` map at any resolution
            (feature grid, or input size for Grad-CAM).
        frame_size (Sequence[int]): ``(width, height)`` of the frame.

    Returns:
        np.ndarray: float64 ``(height, width)`` map in ``[0, 1]``.
    """
    if isinstance(heatmap, Tensor):
        heatmap = heatmap.detach().cpu().double().numpy()
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ValueError(f'A score map must be (h, w), got shape '
                         f'{heatmap.shape}.')
    resized = cv2.resize(heatmap, (int(frame_size[0]), int(frame_size[1])),
                         interpolation=cv2.INTER_CUBIC)
    return normalize_scoremap(resized)


def _contour_boxes(binary: np.ndarray, multi_contour: bool) -> np.ndarray:
    """``(k, 4)`` boxes of the contours of an 8-bit binary map."""
    height, width = binary.shape
    contours = cv2.findContours(binary, cv2.RETR_TREE,
                                cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        areas = [cv2.contourArea(c) for c in contours]
        contours = [contours[int(np.argmax(areas))]]  # first of the largest
    boxes = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64)
    boxes[:, 2:] += boxes[:, :2]
    np.minimum(boxes[:, 2], width - 1, out=boxes[:, 2])
    np.minimum(boxes[:, 3], height - 1, out=boxes[:, 3])
    return boxes


def boxes_at_thresholds(scoremap: np.ndarray,
                        thresholds: Sequence[float],
                        multi_contour: bool = False) -> List[np.ndarray]:
    """Estimated boxes of a normalised map at each threshold.

    Args:
        scoremap (np.ndarray): ``(H, W)`` map in ``[0, 1]``
            (:func:`frame_scoremap`).
        thresholds (Sequence[float]): Thresholds ``tau`` in ``[0, 1)``.
        multi_contour (bool): Every contour's box (MaxBoxAccV2) instead of
            the largest contour's (MaxBoxAcc). Defaults to False.

    Returns:
        list[np.ndarray]: per threshold, ``(k, 4)`` int64 boxes ``(x0, y0,
        x1, y1)`` (inclusive pixels); ``[[0, 0, 0, 0]]`` where no pixel is
        kept.
    """
    scoremap = np.asarray(scoremap, dtype=np.float64)
    if scoremap.ndim != 2 or np.isnan(scoremap).any() or \
            scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError('A score map must be (H, W) in [0, 1] without NaN '
                         '(normalise it with frame_scoremap first).')
    image = (scoremap * 255).astype(np.uint8)
    peak = int(image.max())
    cache = {}
    boxes = []
    for tau in thresholds:
        level = int(tau * peak)
        if level not in cache:
            # OpenCV's THRESH_BINARY: kept where strictly above the level.
            binary = np.where(image > level, 255, 0).astype(np.uint8)
            cache[level] = _contour_boxes(binary, multi_contour)
        boxes.append(cache[level])
    return boxes


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes in inclusive pixel coordinates: ``(x0, y0, x1,
    y1)`` covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels, so ``(0, 0, 0,
    0)`` is the one pixel at the origin.

    Args:
        boxes_a (np.ndarray): ``(A, 4)`` (or ``(4,)``) boxes with ``0 <= x0
            <= x1`` and ``0 <= y0 <= y1``.
        boxes_b (np.ndarray): ``(B, 4)`` (or ``(4,)``) boxes, likewise.

    Returns:
        np.ndarray: ``(A, B)`` float64 IoUs; 0 where the union is empty.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(1, -1, 4)
    for boxes in (a, b):
        if (boxes < 0).any() or (boxes[..., 2:] < boxes[..., :2]).any():
            raise ValueError(
                'Boxes must be (x0, y0, x1, y1) with 0 <= x0 <= x1 and 0 <= '
                f'y0 <= y1, got {boxes.reshape(-1, 4).tolist()}: check the '
                'order of the gt_bbox coordinates.')
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) -
                         np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) -
                         np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_box_ious(scoremap: np.ndarray, gt_boxes: np.ndarray,
                  thresholds: Sequence[float],
                  multi_contour: bool = False) -> np.ndarray:
    """Per threshold, the best IoU between any estimated box of the map and
    any ground-truth box.

    Args:
        scoremap (np.ndarray): ``(H, W)`` normalised map in the frame.
        gt_boxes (np.ndarray): ``(M, 4)`` boxes in the frame.
        thresholds (Sequence[float]): Thresholds ``tau``.
        multi_contour (bool): All contours (V2) or the largest (V1).

    Returns:
        np.ndarray: ``(T,)`` best IoUs.
    """
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    per_threshold = boxes_at_thresholds(scoremap, thresholds, multi_contour)
    best = {}
    out = np.empty(len(per_threshold))
    for i, boxes in enumerate(per_threshold):
        key = id(boxes)  # thresholds at the same 8-bit level share boxes
        if key not in best:
            best[key] = float(box_iou(boxes, gt_boxes).max())
        out[i] = best[key]
    return out


def max_box_acc(correct: np.ndarray) -> Tuple[float, int]:
    """MaxBoxAcc from per-image correctness at every threshold.

    Args:
        correct (np.ndarray): ``(N, T)`` bool, image ``n`` localised at
            threshold ``t`` (best IoU >= delta).

    Returns:
        tuple[float, int]: the best accuracy over thresholds, in percent,
        and the index of the (first) threshold reaching it.
    """
    curve = 100.0 * np.asarray(correct, dtype=np.float64).mean(axis=0)
    best = int(np.argmax(curve))
    return float(curve[best]), best


def score_histograms(scoremap: np.ndarray, foreground: np.ndarray,
                     ignore: Optional[np.ndarray],
                     thresholds: Sequence[float]
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Histograms of a normalised map's scores at foreground and background
    pixels, the bins ``[0, b), [b, 2b), ..., [1 - b, 1), [1, 2), [2, 3]``
    for thresholds ``0, b, ..., 1 - b``; ignored pixels are left out.

    Args:
        scoremap (np.ndarray): ``(H, W)`` normalised map in the frame.
        foreground (np.ndarray): ``(H, W)`` bool, union of the instance
            masks.
        ignore (np.ndarray, optional): ``(H, W)`` bool ignore region; only
            its pixels outside the foreground are left out.
        thresholds (Sequence[float]): Thresholds (the bins' left edges).

    Returns:
        tuple[np.ndarray, np.ndarray]: float64 ``(T + 2,)`` counts at
        foreground and at background pixels.
    """
    edges = np.append(np.asarray(thresholds, dtype=np.float64),
                      [1.0, 2.0, 3.0])
    foreground = np.asarray(foreground, dtype=bool)
    background = ~foreground
    if ignore is not None:
        background &= ~np.asarray(ignore, dtype=bool)
    positive = np.histogram(scoremap[foreground], bins=edges)[0]
    negative = np.histogram(scoremap[background], bins=edges)[0]
    return positive.astype(np.float64), negative.astype(np.float64)


def pxap(positive: np.ndarray, negative: np.ndarray) -> float:
    r"""Pixel average precision (PxAP) from histograms pooled over a split.

    With the bins reversed, cumulative sums give true and false positives
    at every threshold, from the highest down;

    .. math::
        \mathrm{PxAP} = 100 \sum_{i \ge 1} P_i \, (R_i - R_{i-1})

    over the thresholds with at least one positive prediction.

    Args:
        positive (np.ndarray): Score histogram at foreground pixels.
        negative (np.ndarray): Score histogram at background pixels.

    Returns:
        float: PxAP in percent.
    """
    tp = np.asarray(positive, dtype=np.float64)[::-1].cumsum()
    fp = np.asarray(negative, dtype=np.float64)[::-1].cumsum()
    if tp[-1] <= 0:
        raise ValueError('PxAP needs foreground pixels, but no ground-truth '
                         'mask of the split has any: check the mask files.')
    predicted = tp + fp
    valid = predicted > 0
    precision = np.divide(tp, predicted, out=np.zeros_like(tp),
                          where=valid)
    recall = tp / tp[-1]
    return float(100.0 * (precision[1:] * np.diff(recall))[valid[1:]].sum())


def peak_in_boxes(scoremap: np.ndarray, boxes: np.ndarray) -> bool:
    """Pointing game: whether the map's (first) maximum lies inside a box
    (inclusive pixels), both in the evaluation frame.

    A threshold-free check of *where* a map looks, complementary to the box
    IoU: a sharp map that points at the object but covers only part of it
    fails the IoU test and passes this one.

    Args:
        scoremap (np.ndarray): ``(H, W)`` map in the frame.
        boxes (np.ndarray): ``(M, 4)`` boxes in the frame.

    Returns:
        bool: the peak lies in at least one box.
    """
    y, x = np.unravel_index(int(np.argmax(scoremap)), scoremap.shape)
    boxes = np.asarray(boxes).reshape(-1, 4)
    return bool(np.any((boxes[:, 0] <= x) & (x <= boxes[:, 2]) &
                       (boxes[:, 1] <= y) & (y <= boxes[:, 3])))


def upsample_map(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize feature-resolution maps to an image size, bilinear with
    ``align_corners=False`` (for pictures; the protocol resizes with
    :func:`frame_scoremap`).

    Args:
        maps (Tensor): ``(h, w)``, ``(k, h, w)`` or ``(n, k, h, w)`` maps.
        size (Sequence[int]): ``(H, W)`` of the image.

    Returns:
        Tensor: the maps at ``(H, W)``, same leading dimensions; float64
        for float64 input, float32 otherwise.
    """
    if maps.ndim not in (2, 3, 4):
        raise ValueError('upsample_map takes (h, w), (k, h, w) or '
                         f'(n, k, h, w) maps, got shape {tuple(maps.shape)}.')
    size = (int(size[0]), int(size[1]))
    lead = maps.shape[:-2]
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    flat = maps.to(dtype).reshape(1, -1, *maps.shape[-2:])
    out = F.interpolate(flat, size=size, mode='bilinear', align_corners=False)
    return out.reshape(*lead, *size)


def image_map(heatmap: Union[Tensor, np.ndarray],
              image_size: Sequence[int]) -> np.ndarray:
    """One ``(h, w)`` map at image resolution as float64 (bilinear, for
    pictures; see :func:`upsample_map`)."""
    heatmap = torch.as_tensor(heatmap).detach().cpu().double()
    return upsample_map(heatmap, image_size).numpy()
