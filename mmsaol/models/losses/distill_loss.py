"""Self-distillation from SAOL into a GAP-FC branch (paper Sec. 3)."""
from __future__ import annotations

import copy
from typing import Optional, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from ..options import check_options


@MODELS.register_module()
class SelfDistillLoss(nn.Module):
    r"""Distil SAOL's output distribution into GAP-FC logits.

    .. math::
        \mathcal{L} = T^2 \,\mathrm{KL}\big(\mathrm{sg}[\mathrm{softmax}(
        \log y_{SAOL} / T)] \,\big\|\, \mathrm{softmax}(z_{GAP} / T)\big)

    ``sg`` is stop-gradient: the teacher (SAOL) receives no gradient from
    this term. :math:`T^2` keeps the gradient scale independent of the
    temperature (Hinton et al., 2015). With :math:`T = 1` the teacher is
    SAOL's own prediction :math:`y_{SAOL}`.

    Args:
        temperature (float): softening temperature :math:`T`. Defaults to 1.0
            (SAOL's output is already a calibrated mixture; no softening).
        loss_weight (float): multiplier of this term. Defaults to 1.0.
    """

    @check_options
    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0
                 ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError('SelfDistillLoss.temperature must be > 0, got '
                             f'{temperature}.')
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, student_logits: Tensor, teacher_log_probs: Tensor
                ) -> Tensor:
        """``student_logits``: ``(N, K)`` GAP-FC logits; ``teacher_log_probs``:
        ``(N, K)`` SAOL's ``log y`` (detached here)."""
        t = self.temperature
        teacher = F.log_softmax(teacher_log_probs.detach().float() / t, dim=1)
        student = F.log_softmax(student_logits.float() / t, dim=1)
        kl = F.kl_div(student, teacher, reduction='batchmean', log_target=True)
        return self.loss_weight * kl * t * t


def build_distillation_losses(distillation: Optional[dict],
                              loss: Union[dict, nn.Module]
                              ) -> Tuple[nn.Module, nn.Module]:
    """The two losses of a distilled GAP-FC branch, from a head's
    ``distillation`` config.

    Args:
        distillation (dict, optional): ``loss``: the distillation term
            (default :class:`SelfDistillLoss`); ``gt_loss``: the branch's
            own ground-truth loss (default: ``loss`` below). None means
            both defaults.
        loss (dict | nn.Module): the head's classification loss config.

    Returns:
        Tuple[nn.Module, nn.Module]: ``(distill_loss, gt_loss)``.
    """
    distillation = dict(distillation or {})
    distill = MODELS.build(distillation.pop('loss',
                                            dict(type='SelfDistillLoss')))
    gt_loss = distillation.pop('gt_loss', copy.deepcopy(loss))
    if distillation:
        raise ValueError('head.distillation accepts only `loss` and '
                         f'`gt_loss`, got {sorted(distillation)}.')
    if not isinstance(gt_loss, nn.Module):
        gt_loss = MODELS.build(gt_loss)
    return distill, gt_loss
