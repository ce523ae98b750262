"""The SAOL output layer as pure functions (paper Eq. 1-2)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample
from torch import Tensor


def saol_log_output(log_attention: Tensor, log_spatial: Tensor) -> Tensor:
    r"""SAOL's output distribution, in log space.

    .. math::
        y_k = \sum_{i,j} A_{ij} \, Y_{k,ij}, \qquad
        A = \mathrm{softmax}_{ij}(a), \quad Y_{\cdot,ij} =
        \mathrm{softmax}_k(s_{\cdot,ij})

    :math:`y` is a convex mixture of per-location class posteriors, hence a
    probability distribution. It is returned as :math:`\log y`, computed as
    ``logsumexp(log A + log Y)`` over the positions (exact, no epsilon), so
    ``softmax(log y) == y`` and every stock mmpretrain loss, metric and
    predictor that applies a softmax to the head output sees :math:`y`.

    Args:
        log_attention (Tensor): ``(N, h, w)`` log attention, normalised over
            the positions.
        log_spatial (Tensor): ``(N, K, h, w)`` log spatial posteriors,
            normalised over the classes.

    Returns:
        Tensor: ``(N, K)`` :math:`\log y`.
    """
    return torch.logsumexp(log_attention.unsqueeze(1) + log_spatial,
                           dim=(2, 3))


def log_spatial_softmax(attention_logits: Tensor) -> Tensor:
    """Log-softmax of ``(N, 1, h, w)`` (or ``(N, h, w)``) attention logits
    over the positions, in float32 (also under autocast)."""
    logits = attention_logits.reshape(attention_logits.shape[0], -1).float()
    return F.log_softmax(logits, dim=1).view(
        attention_logits.shape[0], *attention_logits.shape[-2:])


def log_class_softmax(spatial_logits: Tensor) -> Tensor:
    """Log-softmax of ``(N, K, h, w)`` spatial logits over the classes, in
    float32 (also under autocast)."""
    return F.log_softmax(spatial_logits.float(), dim=1)


def class_maps(log_attention: Tensor, log_spatial: Tensor,
               classes: Tensor) -> Tensor:
    r"""Class evidence maps :math:`A \odot Y_k` of chosen classes.

    Each map sums over the positions to :math:`y_k`, the output probability
    of that class, so the maps show where the prediction comes from.

    Args:
        log_attention (Tensor): ``(N, h, w)``.
        log_spatial (Tensor): ``(N, K, h, w)``.
        classes (Tensor): ``(N, k)`` class indices per image.

    Returns:
        Tensor: ``(N, k, h, w)`` maps.
    """
    index = classes[:, :, None, None].expand(-1, -1, *log_spatial.shape[-2:])
    return (log_attention.unsqueeze(1) + log_spatial.gather(1, index)).exp()


def _halve(x: Tensor, dim: int) -> Tensor:
    """Sum adjacent pairs along ``dim`` (-1 or -2) of an even-sized map."""
    if dim == -1:
        return x[..., 0::2] + x[..., 1::2]
    return x[..., 0::2, :] + x[..., 1::2, :]


def block_average(x: Tensor, size: Sequence[int]) -> Tensor:
    """Average pooling of ``(..., H, W)`` to ``size`` when ``H`` and ``W``
    are multiples of it, equal to ``adaptive_avg_pool2d`` up to rounding.

    PyTorch's CPU pooling kernels walk each small window separately, which
    made pooling a fifth of SAOL's head time on ResNet-50; here every
    factor of two is one vectorised add of two strided halves (rows first,
    while rows are contiguous), and any odd factor left is pooled by
    ``adaptive_avg_pool2d`` on the already small map (exact: the blocks
    nest). The partial sums round in the input's dtype, so
    :func:`resize_to_grid` uses this only for float32/float64 maps on the
    CPU (on CUDA one pooling kernel beats several adds).
    """
    (h, w), (gh, gw) = x.shape[-2:], (int(size[0]), int(size[1]))
    if h % gh or w % gw:
        raise ValueError(f'block_average needs a grid that divides the map: '
                         f'{(h, w)} -> {(gh, gw)}.')
    kh, kw = h // gh, w // gw
    summed, y = 1, x
    while kh % 2 == 0 or kw % 2 == 0:
        if kh % 2 == 0:
            y, kh, summed = _halve(y, -2), kh // 2, summed * 2
        if kw % 2 == 0:
            y, kw, summed = _halve(y, -1), kw // 2, summed * 2
    if summed > 1:
        y = y / summed
    if (kh, kw) != (1, 1):
        y = F.adaptive_avg_pool2d(y, (gh, gw))
    return y


def resize_to_grid(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bring a feature map to the grid ``size``: average pooling to go down
    (each output cell averages the input cells it covers; see
    :func:`block_average` for the fast path when the grid divides the
    map), bilinear interpolation to go up, identity when already there."""
    size = tuple(int(s) for s in size)
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if h >= size[0] and w >= size[1]:
        if h % size[0] == 0 and w % size[1] == 0 \
                and x.device.type == 'cpu' \
                and x.dtype in (torch.float32, torch.float64):
            return block_average(x, size)
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def classification_target(data_samples: Sequence[DataSample],
                          num_classes: int) -> Tensor:
    """The classification target of a batch, as ``ClsHead`` reads it: the
    samples' ``gt_score`` ``(N, K)`` after batch augments, else their
    ``gt_label`` ``(N,)``; with a sentence naming ``num_classes`` when the
    data has more classes than the head."""
    if 'gt_score' in data_samples[0]:
        target = torch.stack([s.gt_score for s in data_samples])
        if target.shape[1] != num_classes:
            raise ValueError(
                f'The data gives {target.shape[1]}-class scores but '
                f'head.num_classes={num_classes}; set '
                'data_preprocessor.num_classes and model.head.num_classes '
                'to the number of classes of the data set.')
        return target
    target = torch.cat([s.gt_label for s in data_samples])
    if target.numel() and int(target.max()) >= num_classes:
        raise ValueError(
            f'A ground-truth label is {int(target.max())} but '
            f'head.num_classes={num_classes}; set model.head.'
            'num_classes to the number of classes of the data set.')
    return target
