"""Self-distillation from SAOL into the GAP-FC branch: the loss against a
hand computation, the stop-gradient on the teacher, and the test-time
output switch (head, then tools/test.py --head end to end)."""
import math
import os.path as osp

import mmengine
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample

from mmsaol.apis.test import main as cli_test

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IN_CHANNELS = (8, 16, 32)


def make_feats(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, c, s, s, generator=g)
                 for c, s in zip(IN_CHANNELS, (8, 4, 4)))


def build_head(**kw):
    cfg = dict(type='SAOLHead', num_classes=5, in_channels=IN_CHANNELS,
               channels=8, zero_init_attention=False, distillation=dict())
    cfg.update(kw)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


# --------------------------------------------------------------- the loss
@pytest.mark.parametrize('temperature, expected', [
    # student logits (0, 0) -> q = (1/2, 1/2); teacher y = (3/4, 1/4).
    # T=1: p = y; KL = 3/4 ln(3/2) + 1/4 ln(1/2).
    (1.0, 0.75 * math.log(1.5) + 0.25 * math.log(0.5)),
    # T=2: p = softmax(log y / 2) = sqrt(y) / sum sqrt(y); times T^2 = 4.
    (2.0, 4 * sum(p * math.log(p / 0.5) for p in (
        math.sqrt(0.75) / (math.sqrt(0.75) + math.sqrt(0.25)),
        math.sqrt(0.25) / (math.sqrt(0.75) + math.sqrt(0.25))))),
])
def test_self_distill_loss_by_hand(temperature, expected):
    loss = MODELS.build(dict(type='SelfDistillLoss', temperature=temperature))
    value = loss(torch.zeros(1, 2), torch.tensor([[0.75, 0.25]]).log())
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('temperature', [1.0, 2.0])
def test_self_distill_loss_matches_explicit_formula(temperature):
    g = torch.Generator().manual_seed(1)
    student = torch.randn(6, 7, generator=g, dtype=torch.float64)
    teacher_log_y = torch.randn(6, 7, generator=g,
                                dtype=torch.float64).log_softmax(1)
    t = temperature
    p = torch.exp(teacher_log_y / t)
    p = p / p.sum(1, keepdim=True)
    q = torch.exp(student / t)
    q = q / q.sum(1, keepdim=True)
    kl = (p * (torch.log(p) - torch.log(q))).sum(1).mean()
    loss = MODELS.build(dict(type='SelfDistillLoss', temperature=t,
                             loss_weight=0.5))
    torch.testing.assert_close(
        loss(student, teacher_log_y).double(), 0.5 * kl * t * t)


def test_self_distill_loss_is_zero_when_student_matches_teacher():
    teacher_log_y = torch.randn(3, 4).log_softmax(1)
    loss = MODELS.build(dict(type='SelfDistillLoss', temperature=2.0))
    # Student logits log y + c: the same distribution at every T.
    assert loss(teacher_log_y + 3.0, teacher_log_y).abs().item() < 1e-6


def test_self_distill_loss_rejects_bad_temperature():
    with pytest.raises(ValueError, match='temperature must be > 0'):
        MODELS.build(dict(type='SelfDistillLoss', temperature=0.0))


# ------------------------------------------------------- stop-gradient
SAOL_ONLY = ('reduce_convs', 'attention', 'spatial_cls')


def test_teacher_gets_no_gradient_from_distillation():
    head = build_head().train()
    feats = tuple(f.requires_grad_() for f in make_feats())
    data = [DataSample().set_gt_label(y) for y in (0, 1, 2, 3)]
    losses = head.loss(feats, data)
    assert losses['loss_distill'] > 0
    losses['loss_distill'].backward()
    for name, param in head.named_parameters():
        if name.startswith(SAOL_ONLY):
            assert param.grad is None or not param.grad.any(), name
    assert head.gapfc.weight.grad.abs().sum() > 0
    assert head.gapfc.bias.grad.abs().sum() > 0
    # The backbone learns from this term only through the student: the
    # stages SAOL alone reads get nothing, the last map (GAP-FC's input) does.
    assert feats[0].grad is None and feats[1].grad is None
    assert feats[-1].grad.abs().sum() > 0


def test_teacher_trains_through_its_own_losses():
    """The control for the test above: SAOL's parameters do get gradient
    from loss_cls, so a missing stop-gradient would have shown."""
    head = build_head().train()
    feats = make_feats()
    data = [DataSample().set_gt_label(y) for y in (0, 1, 2, 3)]
    head.loss(feats, data)['loss_cls'].backward()
    assert head.spatial_cls.weight.grad.abs().sum() > 0
    assert head.attention[-1].weight.grad.abs().sum() > 0
    assert head.gapfc.weight.grad is None


# ------------------------------------------------------ test_output switch
def test_test_output_switches_forward_and_predict():
    saol = build_head().eval()
    gapfc = build_head(test_output='gapfc').eval()
    gapfc.load_state_dict(saol.state_dict())
    feats = make_feats()
    logits = gapfc.gapfc(feats[-1].mean(dim=(2, 3)))
    log_y = saol.saol_outputs(feats).log_probs
    torch.testing.assert_close(gapfc(feats), logits)
    torch.testing.assert_close(saol(feats), log_y)
    for head, expected in ((saol, log_y.exp()), (gapfc, logits.softmax(1))):
        pred = head.predict(feats)
        scores = torch.stack([p.pred_score for p in pred])
        torch.testing.assert_close(scores, expected)
        assert [int(p.pred_label) for p in pred] == \
            expected.argmax(1).tolist()
    assert not torch.allclose(log_y.exp(), logits.softmax(1), atol=1e-3)


def test_test_output_gapfc_needs_the_branch():
    with pytest.raises(ValueError, match='head.distillation'):
        build_head(distillation=None, test_output='gapfc')


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """An untrained (randomly initialised) saol_demo model, saved as a
    plain checkpoint: the two branches then disagree on most images."""
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'saol_demo.py'))
    # As the Runner does: the top-level data_preprocessor is the model's.
    model = MODELS.build(dict(cfg.model,
                              data_preprocessor=cfg.data_preprocessor))
    model.init_weights()
    path = str(tmp_path_factory.mktemp('distill') / 'init.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return cfg, model.eval(), path


def branch_scores(cfg, model, indices):
    """Both branches' scores, computed directly, on the test split."""
    dataset_cfg = dict(cfg.test_dataloader.dataset, indices=indices)
    dataset = DATASETS.build(dataset_cfg)
    data = model.data_preprocessor(
        pseudo_collate([dataset[i] for i in range(len(dataset))]))
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        saol = model.head.saol_outputs(feats).log_probs.exp()
        gapfc = model.head.gapfc_logits(feats[-1]).softmax(1)
    labels = torch.cat([s.gt_label for s in data['data_samples']])
    return dict(saol=saol, gapfc=gapfc), labels


def test_test_tool_head_flag_selects_the_branch(demo_checkpoint, tmp_path):
    cfg, model, checkpoint = demo_checkpoint
    expected, labels = branch_scores(cfg, model, indices=24)
    assert not torch.allclose(expected['saol'], expected['gapfc'], atol=1e-3)
    for head in ('saol', 'gapfc'):
        out = str(tmp_path / f'{head}.pkl')
        metrics = cli_test([
            osp.join(REPO, 'configs', 'saol_demo.py'), checkpoint,
            '--head', head, '--out', out, '--work-dir', str(tmp_path),
            '--cfg-options', 'test_dataloader.dataset.indices=24'])
        preds = sorted(mmengine.load(out), key=lambda p: p['sample_idx'])
        scores = torch.stack([p['pred_score'] for p in preds])
        torch.testing.assert_close(scores, expected[head], rtol=0,
                                   atol=1e-5)
        # The metric counts the tool's own predictions (exact); they agree
        # with the direct computation wherever its top-2 gap exceeds the
        # rounding tolerance above.
        own = [int(p['pred_label']) == int(p['gt_label']) for p in preds]
        assert metrics['accuracy/top1'] == pytest.approx(
            100 * sum(own) / len(own), abs=1e-4)
        top2 = expected[head].topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2e-5
        predicted = torch.tensor([int(p['pred_label']) for p in preds])
        assert torch.equal(predicted[clear], expected[head].argmax(1)[clear])
        assert torch.equal(torch.cat([p['gt_label'] for p in preds]), labels)
