"""TwoGAPFCHead: the two-heads control for SAOL's self-distillation."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mmsaol  # noqa: F401


def build(**kwargs):
    cfg = dict(type='TwoGAPFCHead', num_classes=3, in_channels=5,
               loss=dict(type='CrossEntropyLoss', use_soft=True))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(n=4):
    scores = torch.softmax(torch.randn(n, 3), dim=1)
    return [DataSample().set_gt_score(s) for s in scores]


def test_outputs_and_losses():
    torch.manual_seed(0)
    head = build()
    feat = (torch.randn(4, 5), )
    assert torch.equal(head(feat), head.fc(feat[0]))
    head.test_output = 'gapfc'
    assert torch.equal(head(feat), head.gapfc(feat[0]))
    losses = head.loss(feat, samples())
    assert sorted(losses) == ['loss_cls', 'loss_distill', 'loss_gapfc']


def test_distillation_does_not_train_the_teacher():
    torch.manual_seed(0)
    head = build()
    feat = torch.randn(4, 5, requires_grad=True)
    head.loss((feat, ), samples())['loss_distill'].backward()
    assert head.fc.weight.grad is None or not head.fc.weight.grad.any()
    assert head.gapfc.weight.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ValueError, match='test_output'):
        build(test_output='cam')
    with pytest.raises(ValueError, match='`loss` and `gt_loss`'):
        build(distillation=dict(temperature=2))


def test_misspelt_option_is_named():
    with pytest.raises(ValueError, match='distillation'):
        build(distilation=dict())
