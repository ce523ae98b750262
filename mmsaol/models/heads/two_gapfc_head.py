"""Two GAP-FC heads, one distilled from the other: the control that
separates SAOL's self-distillation gain from "two heads" training."""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ...checks import check_choice
from ..losses.distill_loss import build_distillation_losses
from ..options import TEST_OUTPUTS, check_options
from .functional import classification_target


@MODELS.register_module()
class TwoGAPFCHead(ClsHead):
    """Two linear heads on the same pooled feature, the second one distilled
    from the first.

    The control for SAOL's self-distillation: :class:`SAOLHead` with
    ``distillation`` trains SAOL and a GAP-FC branch on one backbone and
    distils SAOL into the branch. This head keeps everything but SAOL: the
    first head (in SAOL's place, the teacher) is a GAP-FC head trained with
    the ground truth; the second (the branch) is trained with the ground
    truth plus the same :class:`SelfDistillLoss` from the first. A gain of
    SAOL + distillation over this control is SAOL's; a gain shared with it
    comes from training two heads. Use with the ``GlobalAveragePooling``
    neck.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the pooled feature.
        loss (dict): Ground-truth loss of the first head (and, by default,
            of the second).
        distillation (dict): ``loss`` (default ``SelfDistillLoss``) and
            ``gt_loss`` (default: ``loss``) of the second head, as in
            :class:`SAOLHead`. Defaults to ``dict()``.
        test_output (str): ``'saol'``: the first head (it stands where SAOL
            would, so ``tools/test.py --head saol`` tests it); ``'gapfc'``:
            the distilled second head. Defaults to ``'saol'``.
        topk, cal_acc, init_cfg: As for :class:`ClsHead` (``init_cfg``
            defaults to ``Normal(std=0.01)`` on the two ``Linear`` layers,
            as ``LinearClsHead``'s).
    """

    @check_options
    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 distillation: Optional[dict] = None,
                 test_output: str = 'saol',
                 topk: Union[int, Tuple[int]] = (1, ),
                 cal_acc: bool = False,
                 init_cfg: Optional[dict] = dict(
                     type='Normal', layer='Linear', std=0.01)) -> None:
        super().__init__(loss=loss, topk=topk, cal_acc=cal_acc,
                         init_cfg=init_cfg)
        check_choice(test_output, TEST_OUTPUTS, 'head.test_output')
        self.num_classes = num_classes
        self.test_output = test_output
        self.fc = nn.Linear(in_channels, num_classes)
        self.gapfc = nn.Linear(in_channels, num_classes)
        self.distill_loss, self.gapfc_loss = build_distillation_losses(
            distillation, loss)

    def pre_logits(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """The pooled last feature."""
        return feats[-1]

    def forward(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """Logits of the head chosen by ``test_output``."""
        head = self.fc if self.test_output == 'saol' else self.gapfc
        return head(self.pre_logits(feats))

    def loss(self, feats: Tuple[Tensor, ...], data_samples: List[DataSample],
             **kwargs) -> dict:
        """``loss_cls`` (first head), ``loss_gapfc`` and ``loss_distill``
        (second head; the first head gets no gradient from the latter)."""
        feat = self.pre_logits(feats)
        teacher = self.fc(feat)
        student = self.gapfc(feat)
        target = classification_target(data_samples, self.num_classes)
        batch = feat.size(0)
        return dict(
            loss_cls=self.loss_module(teacher, target, avg_factor=batch,
                                      **kwargs),
            loss_gapfc=self.gapfc_loss(student, target, avg_factor=batch,
                                       **kwargs),
            loss_distill=self.distill_loss(
                student, F.log_softmax(teacher.float(), dim=1)))
