"""The SAOL output layer as pure functions (paper Eq. 1-2)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
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


def resize_to_grid(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bring a feature map to the grid ``size``: adaptive average pooling to
    go down (each output cell averages the input cells it covers), bilinear
    interpolation to go up, identity when already there."""
    size = tuple(int(s) for s in size)
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if h >= size[0] and w >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)
