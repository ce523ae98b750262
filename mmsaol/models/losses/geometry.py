"""CutMix geometry on feature grids: where a pixel box meets a grid.

Everything in mmsaol that needs to know "how much of feature cell (i, j) was
pasted from the partner image" calls :func:`box_to_cell_coverage`; everything
that cuts and pastes per-location maps calls :func:`paste_maps`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def cell_stride(length: int, cells: int) -> float:
    """Pixels per feature cell along one axis of a ``length``-pixel input.

    ``length / cells`` when the grid divides the input (every cell the same
    block). Otherwise the network padded the input: a stride-``s`` stage
    with "same" padding (ResNet's convs, ViT's and Swin's patch padding)
    gives ``ceil(length / s)`` cells, cell ``i`` reading pixels
    ``[i s, (i + 1) s)`` and the last one running past the image. ``s`` is
    then the power of two with ``ceil(length / s) == cells`` (the strides
    of mmpretrain's backbones are powers of two). When there is none, the
    cells are taken as ``length / cells`` pixels each: then a cell edge may
    be off by less than one cell from the network's true one (at the far
    end; nearer the origin proportionally less).
    """
    if length % cells == 0:
        return length / cells
    stride = 1
    while stride <= length:
        if -(-length // stride) == cells:
            return float(stride)
        stride *= 2
    return length / cells


def _axis_coverage(lo: Tensor, hi: Tensor, length: float, cells: int,
                   step: float) -> Tensor:
    """Fraction of each of ``cells`` cells of ``step`` pixels, starting at
    0 and clipped to ``[0, length)``, that ``[lo, hi)`` covers.
    ``lo``/``hi``: ``(N,)``; returns ``(N, cells)``."""
    edges = (torch.arange(cells + 1, device=lo.device,
                          dtype=torch.float64) * step).clamp(max=length)
    start = torch.maximum(lo.double()[:, None], edges[None, :-1])
    end = torch.minimum(hi.double()[:, None], edges[None, 1:])
    width = (edges[1:] - edges[:-1])[None]
    return ((end - start).clamp(min=0) / width).float()


def box_to_cell_coverage(boxes: Tensor, image_size: Sequence[int],
                         grid_size: Sequence[int]) -> Tensor:
    r"""Exact fraction of every feature cell covered by a pixel box.

    The input image of size :math:`H \times W` is seen by a feature grid of
    :math:`h \times w` cells of :math:`s_y \times s_x` pixels (see
    :func:`cell_stride`): cell :math:`(i, j)` stands for the pixel rectangle
    :math:`Y_i \times X_j = [i s_y, (i+1) s_y) \times [j s_x, (j+1) s_x)`,
    clipped to the image. When the grid divides the image this is the usual
    :math:`s \times s` block with :math:`s = H / h`; when the network padded
    the input, the last row/column of cells holds fewer image pixels and the
    fraction is taken over those. For a box
    :math:`[x_1, x_2) \times [y_1, y_2)` the covered fraction is separable:

    .. math::
        M_{ij} = \frac{|[y_1, y_2) \cap Y_i|}{|Y_i|}
                 \cdot \frac{|[x_1, x_2) \cap X_j|}{|X_j|}

    so a cell fully inside the box gets 1, a cell outside gets 0, and a cell
    cut by the box edge gets the exact pixel-area fraction.

    Args:
        boxes (Tensor): ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels of the
            network input, half-open (``x2``/``y2`` exclusive), as CutMix
            slices them. Empty boxes (``x2 <= x1``) give an all-zero mask.
        image_size (Sequence[int]): ``(H, W)`` of the network input.
        grid_size (Sequence[int]): ``(h, w)`` of the feature map.

    Returns:
        Tensor: ``(N, h, w)`` coverage in ``[0, 1]``, float32.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(
            f'boxes must have shape (N, 4) as (x1, y1, x2, y2), got '
            f'{tuple(boxes.shape)}.')
    img_h, img_w = (float(s) for s in image_size)
    grid_h, grid_w = (int(s) for s in grid_size)
    if min(img_h, img_w) <= 0 or min(grid_h, grid_w) <= 0:
        raise ValueError(f'image_size {tuple(image_size)} and grid_size '
                         f'{tuple(grid_size)} must be positive.')
    cov_y = _axis_coverage(boxes[:, 1], boxes[:, 3], img_h, grid_h,
                           cell_stride(round(img_h), grid_h))
    cov_x = _axis_coverage(boxes[:, 0], boxes[:, 2], img_w, grid_w,
                           cell_stride(round(img_w), grid_w))
    return cov_y[:, :, None] * cov_x[:, None, :]


def paste_maps(maps: Tensor, partner: Tensor, coverage: Tensor) -> Tensor:
    r"""Cut-and-paste per-location maps with the geometry of a CutMix batch.

    .. math::
        T_i = (1 - M_i) \odot X_i + M_i \odot X_{\pi(i)}

    where :math:`\pi` is the CutMix partner permutation and :math:`M_i` the
    cell coverage of image :math:`i`'s pasted box (see
    :func:`box_to_cell_coverage`).

    Args:
        maps (Tensor): ``(N, ..., h, w)`` maps of the un-mixed images (class
            posteriors, attention, one-hot label maps).
        partner (Tensor): ``(N,)`` index of the image pasted into image i.
        coverage (Tensor): ``(N, h, w)`` pasted fraction per cell.

    Returns:
        Tensor: the maps the mixed images should have, same shape as ``maps``.
    """
    mask = coverage.to(maps.dtype)
    mask = mask.view(mask.shape[0], *([1] * (maps.ndim - 3)), *mask.shape[1:])
    return (1 - mask) * maps + mask * maps[partner]
