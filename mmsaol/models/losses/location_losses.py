"""SAOL's location-specific self-supervision (paper Sec. 3): the two
losses, and the targets they compare with (built from the CutMix geometry;
each a named function with its equation)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from ...checks import check_choice
from ...structures import SAOLOutputs
from ..options import check_options
from .geometry import paste_maps

CRITERIA = ('kl', 'ce')


def distribution_loss(log_pred: Tensor, target: Tensor, dim: int | tuple,
                      criterion: str = 'kl') -> Tensor:
    r"""Per-distribution divergence between a target and a log-prediction.

    ``ce``: :math:`-\sum t \log p`; ``kl``: :math:`\sum t (\log t - \log p)`,
    which equals ``ce`` minus the target's entropy: the same gradient, but
    zero exactly when the prediction matches the target.

    Args:
        log_pred (Tensor): log-probabilities, normalised over ``dim``.
        target (Tensor): probabilities of the same shape, normalised over
            ``dim``; no gradient flows into it.
        dim (int | tuple): the dimension(s) that form one distribution.
        criterion (str): ``'kl'`` or ``'ce'``.

    Returns:
        Tensor: the loss with ``dim`` reduced away.
    """
    target = target.detach().float()
    log_pred = log_pred.float()
    loss = -target * log_pred
    if criterion == 'kl':
        loss = loss + torch.xlogy(target, target)
    return loss.sum(dim=dim)


class _LocationLoss(nn.Module):
    """Shared checks and weighting of the two location losses."""

    @check_options
    def __init__(self, criterion: str = 'kl', loss_weight: float = 1.0
                 ) -> None:
        super().__init__()
        check_choice(criterion, CRITERIA, f'{type(self).__name__}.criterion')
        self.criterion = criterion
        self.loss_weight = loss_weight

    def _reduce(self, per_sample: Tensor, weight: Optional[Tensor]) -> Tensor:
        """Weighted mean over samples; ``weight`` 0 drops a sample (e.g. one
        that was not CutMix-ed). An all-zero weight gives an exact zero that
        still belongs to the graph, so DDP sees the same parameters used."""
        if weight is None:
            return self.loss_weight * per_sample.mean()
        weight = weight.to(per_sample.dtype)
        return self.loss_weight * (per_sample * weight).sum() / \
            weight.sum().clamp(min=1)


@MODELS.register_module()
class SpatialLogitsLoss(_LocationLoss):
    """Per-location class-distribution loss on SAOL's spatial logits.

    Compares the spatial class posteriors :math:`Y \\in [0,1]^{K\\times h
    \\times w}` of a mixed image with a per-location target (the
    cut-and-pasted posteriors of the un-mixed images, or a cut-and-pasted
    one-hot label map), averaged over the locations and the weighted samples.

    Args:
        criterion (str): ``'kl'`` (default: zero when the maps match) or
            ``'ce'`` (same gradient, offset by the target entropy).
        loss_weight (float): multiplier of this term. Defaults to 1.0.
    """

    def forward(self, log_spatial: Tensor, target: Tensor,
                weight: Optional[Tensor] = None) -> Tensor:
        """Maps ``(N, K, h, w)``; per-sample ``weight`` ``(N,)``."""
        per_location = distribution_loss(log_spatial, target, 1,
                                         self.criterion)
        return self._reduce(per_location.mean(dim=(1, 2)), weight)


@MODELS.register_module()
class AttentionLoss(_LocationLoss):
    """Distribution loss on SAOL's spatial attention map.

    The attention map :math:`A` is a distribution over the :math:`h \\times
    w` positions; the target is the cut-and-pasted, renormalised attention of
    the un-mixed images.

    Args:
        criterion (str): ``'kl'`` (default) or ``'ce'``.
        loss_weight (float): multiplier of this term. Defaults to 1.0.
    """

    def forward(self, log_attention: Tensor, target: Tensor,
                weight: Optional[Tensor] = None) -> Tensor:
        """Maps ``(N, h, w)``; per-sample ``weight`` ``(N,)``."""
        return self._reduce(
            distribution_loss(log_attention, target, (1, 2), self.criterion),
            weight)


# --------------------------------------------------------------- targets
# What the mixed image's maps should be, built from the CutMix geometry:
# ``coverage`` is M, the (N, h, w) pasted fraction of every feature cell
# (:func:`box_to_cell_coverage`), ``partner`` is pi, the (N,) index of the
# image pasted into image i.


def label_map_target(labels: Tensor, num_classes: int, partner: Tensor,
                     coverage: Tensor) -> Tensor:
    r"""Self-supervision ``'label'``: the cut-and-pasted one-hot label maps.

    .. math::
        T_{i,:,jk} = (1 - M_{i,jk})\, e_{y_i} + M_{i,jk}\, e_{y_{\pi(i)}}

    Args:
        labels (Tensor): ``(N,)`` ground-truth classes of the un-mixed
            images.
        num_classes (int): ``K``.
        partner (Tensor): ``(N,)`` partner index ``pi``.
        coverage (Tensor): ``(N, h, w)`` pasted fraction ``M``.

    Returns:
        Tensor: ``(N, K, h, w)`` target of :class:`SpatialLogitsLoss`.
    """
    onehot = F.one_hot(labels.long(), num_classes).float()
    label_maps = onehot[:, :, None, None].expand(-1, -1,
                                                 *coverage.shape[-2:])
    return paste_maps(label_maps, partner, coverage)


def self_annotated_spatial_target(unmixed: SAOLOutputs, partner: Tensor,
                                  coverage: Tensor) -> Tensor:
    r"""Self-supervision ``'self'``: the un-mixed images' spatial posteriors
    ``Y`` cut and pasted like the images.

    .. math::
        T_i = (1 - M_i) \odot Y_i + M_i \odot Y_{\pi(i)}

    Args:
        unmixed (SAOLOutputs): SAOL's maps of the un-mixed images.
        partner (Tensor): ``(N,)`` partner index ``pi``.
        coverage (Tensor): ``(N, h, w)`` pasted fraction ``M``.

    Returns:
        Tensor: ``(N, K, h, w)`` target of :class:`SpatialLogitsLoss`.
    """
    return paste_maps(unmixed.log_spatial.exp(), partner, coverage)


def self_annotated_attention_target(unmixed: SAOLOutputs, partner: Tensor,
                                    coverage: Tensor) -> Tensor:
    r"""Self-supervision ``'self'``: the un-mixed images' attention ``A``
    cut and pasted like the images, renormalised to a distribution.

    .. math::
        \tilde A_i = (1 - M_i) \odot A_i + M_i \odot A_{\pi(i)}, \qquad
        T_i = \tilde A_i / \textstyle\sum_{jk} \tilde A_{i,jk}

    Args:
        unmixed (SAOLOutputs): SAOL's maps of the un-mixed images.
        partner (Tensor): ``(N,)`` partner index ``pi``.
        coverage (Tensor): ``(N, h, w)`` pasted fraction ``M``.

    Returns:
        Tensor: ``(N, h, w)`` target of :class:`AttentionLoss`.
    """
    pasted = paste_maps(unmixed.log_attention.exp(), partner, coverage)
    return pasted / pasted.sum(dim=(1, 2), keepdim=True).clamp(
        min=torch.finfo(pasted.dtype).tiny)


def attention_mixed_labels(labels: Tensor, num_classes: int,
                           attention: Tensor, partner: Tensor,
                           coverage: Tensor) -> Tensor:
    r"""``label_mix='attention'``: the two labels of a CutMix image mixed by
    the attention mass inside the pasted box (cf. TransMix, CVPR 2022).

    .. math::
        s_i = \textstyle\sum_{jk} A_{i,jk} M_{i,jk}, \qquad
        t_i = (1 - s_i)\, e_{y_i} + s_i\, e_{y_{\pi(i)}}

    Args:
        labels (Tensor): ``(N,)`` ground-truth classes of the un-mixed
            images.
        num_classes (int): ``K``.
        attention (Tensor): ``(N, h, w)`` attention that decides the shares
            (no gradient flows into it).
        partner (Tensor): ``(N,)`` partner index ``pi``.
        coverage (Tensor): ``(N, h, w)`` pasted fraction ``M``.

    Returns:
        Tensor: ``(N, K)`` soft target of SAOL's output ``y``.
    """
    share = (attention.detach().float() * coverage).sum(dim=(1, 2))
    share = share.clamp(0, 1)
    onehot = F.one_hot(labels.to(share.device).long(), num_classes).float()
    return (1 - share)[:, None] * onehot + share[:, None] * onehot[partner]
