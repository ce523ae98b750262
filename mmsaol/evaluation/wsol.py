"""Weakly-supervised object localisation (WSOL) as pure functions.

The standard protocol (Zhou et al., CVPR 2016; Choe et al., CVPR 2020),
used by the SAOL paper (Kim, Baek, Kim, CVPR 2020, Sec. 4): a class map
(or SAOL's attention map) is upsampled to the image, min-max normalised,
thresholded; the bounding box of the largest connected component is the
estimated box, correct when its IoU with a ground-truth box reaches the IoU
threshold. Boxes are ``(x1, y1, x2, y2)`` in pixels, half-open: a box that
covers pixel columns ``0..w-1`` is ``(0, y1, w, y2)``.
"""
from __future__ import annotations

from typing import Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou as _torchvision_box_iou


def upsample_map(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize feature-resolution maps to an image size.

    Bilinear, ``align_corners=False`` (each map cell covers its stride-sized
    patch of the image, as the feature grid does).

    Args:
        maps (Tensor): ``(h, w)``, ``(k, h, w)`` or ``(n, k, h, w)`` maps.
        size (Sequence[int]): ``(H, W)`` of the image, e.g. a sample's
            ``img_shape`` (the network input) or ``ori_shape`` (the image
            before the test pipeline resized it).

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
    """One ``(h, w)`` feature-resolution map at image resolution, as a
    float64 array (:func:`upsample_map` on the CPU).

    Float64 keeps a constant map constant: float32 rounding of the
    interpolation would otherwise become spurious contrast once the map is
    min-max normalised, while the real contrasts of a float32 map survive.
    """
    heatmap = torch.as_tensor(heatmap).detach().cpu().double()
    return upsample_map(heatmap, image_size).numpy()


def normalize_map(heatmap: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to ``[0, 1]``.

    A constant map has no preferred location: every pixel is its maximum,
    so it normalises to ones (its box is the whole image at any threshold).
    Differences below 1e-9 of the map's magnitude count as constant: they
    are rounding left by upsampling a constant map, not evidence.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    low, high = heatmap.min(), heatmap.max()
    if high - low <= 1e-9 * max(abs(high), abs(low)):
        return np.ones_like(heatmap)
    return (heatmap - low) / (high - low)


def boxes_from_map(heatmap: np.ndarray,
                   thresholds: Sequence[float]) -> np.ndarray:
    """Estimated boxes of a map at several thresholds.

    Args:
        heatmap (np.ndarray): ``(H, W)`` map at image resolution (not yet
            normalised).
        thresholds (Sequence[float]): Thresholds in ``[0, 1]`` on the
            min-max normalised map; a pixel is kept when its value is
            ``>= threshold``.

    Returns:
        np.ndarray: ``(T, 4)`` boxes, one per threshold.
    """
    normalized = normalize_map(heatmap)
    return np.stack([largest_component_box(normalized >= t)
                     for t in thresholds])


def largest_component_box(mask: np.ndarray) -> np.ndarray:
    """Bounding box of the largest 8-connected component of a binary mask.

    Components come from OpenCV (``cv2.connectedComponentsWithStats``, 8-way
    connectivity), whose statistics already hold each component's area and
    box.

    Args:
        mask (np.ndarray): ``(H, W)`` boolean mask.

    Returns:
        np.ndarray: ``(4,)`` float box ``(x1, y1, x2, y2)``, half-open; all
        zeros (an empty box, IoU 0 with anything) when the mask is empty.
        Ties between equally large components go to the first in raster
        order (the one whose first pixel, row by row, comes first).
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:  # label 0 is the background
        return np.zeros(4)
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = np.flatnonzero(areas == areas.max()) + 1
    if len(largest) > 1:
        # A component's first pixel in raster order lies on its top row.
        tops = stats[largest, cv2.CC_STAT_TOP]
        firsts = [top * mask.shape[1] + int(np.argmax(labels[top] == label))
                  for label, top in zip(largest, tops)]
        largest = largest[int(np.argmin(firsts))]
    else:
        largest = largest[0]
    x, y, w, h = (int(stats[largest, k]) for k in (
        cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
        cv2.CC_STAT_HEIGHT))
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``(x1, y1, x2, y2)`` boxes
    (``torchvision.ops.box_iou`` in float64).

    Args:
        boxes_a (np.ndarray): ``(A, 4)`` (or ``(4,)``) boxes with
            ``x1 <= x2`` and ``y1 <= y2``.
        boxes_b (np.ndarray): ``(B, 4)`` (or ``(4,)``) boxes, likewise.

    Returns:
        np.ndarray: ``(A, B)`` IoUs; 0 where the union is empty (two empty
        boxes).
    """
    a = torch.as_tensor(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))
    for boxes in (a, b):
        if bool((boxes[:, 2:] < boxes[:, :2]).any()):
            raise ValueError(
                'Boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, '
                f'got {boxes.tolist()}: check the order of the gt_bbox '
                'coordinates.')
    return torch.nan_to_num(_torchvision_box_iou(a, b), nan=0.0).numpy()


def scale_boxes(boxes: np.ndarray, from_shape: Sequence[int],
                to_shape: Sequence[int]) -> np.ndarray:
    """Map ``(x1, y1, x2, y2)`` boxes from an ``(H, W)`` frame to another
    frame of the same scene, e.g. from ``ori_shape`` to ``img_shape`` after
    a resize.

    Args:
        boxes (np.ndarray): ``(..., 4)`` boxes.
        from_shape (Sequence[int]): ``(H, W)`` of their frame.
        to_shape (Sequence[int]): ``(H, W)`` of the target frame.

    Returns:
        np.ndarray: the scaled boxes, float64.
    """
    scale_y = to_shape[0] / from_shape[0]
    scale_x = to_shape[1] / from_shape[1]
    return np.asarray(boxes, dtype=np.float64) * np.array(
        [scale_x, scale_y, scale_x, scale_y])


def localization_ious(heatmap: Union[Tensor, np.ndarray],
                      image_size: Sequence[int], gt_boxes: np.ndarray,
                      thresholds: Sequence[float]) -> np.ndarray:
    """IoU of a map's estimated box with the best-matching ground-truth box,
    at every threshold: the whole WSOL protocol for one map.

    Args:
        heatmap (Tensor | np.ndarray): ``(h, w)`` map at feature resolution.
        image_size (Sequence[int]): ``(H, W)`` of the frame the ground-truth
            boxes are given in.
        gt_boxes (np.ndarray): ``(4,)`` or ``(M, 4)`` ground-truth boxes.
        thresholds (Sequence[float]): Thresholds on the normalised map.

    Returns:
        np.ndarray: ``(T,)`` best IoU over the ground-truth boxes.
    """
    boxes = boxes_from_map(image_map(heatmap, image_size), thresholds)
    return box_iou(boxes, gt_boxes).max(axis=1)


def peak_in_boxes(heatmap: Union[Tensor, np.ndarray],
                  image_size: Sequence[int], gt_boxes: np.ndarray) -> bool:
    """Pointing game: whether the map's maximum, at image resolution, lies
    inside a ground-truth box (half-open ``x1, y1, x2, y2``).

    A threshold-free check of *where* a map looks, complementary to the box
    IoU of the WSOL protocol: a sharp map that points at the object but
    covers only part of it fails the IoU test and passes this one.
    """
    full = image_map(heatmap, image_size)
    y, x = np.unravel_index(int(np.argmax(full)), full.shape)
    boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    px, py = x + 0.5, y + 0.5  # pixel centre
    return bool(np.any((boxes[:, 0] <= px) & (px < boxes[:, 2]) &
                       (boxes[:, 1] <= py) & (py < boxes[:, 3])))
