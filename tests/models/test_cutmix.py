"""GeometryCutMix and SAOLDataPreprocessor: the recorded geometry is what
was pasted, and the preprocessor hands it to the model's forward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.utils.batch_augments import CutMix
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.models.batch_augments import GeometryCutMix


def distinct_batch(n=6, size=(12, 16)):
    """Images whose every pixel value names its image."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(
        n, 3, *size).clone()


@pytest.mark.parametrize('per_sample_box', [False, True])
def test_recorded_geometry_matches_pasted_pixels(per_sample_box):
    np.random.seed(3)
    torch.manual_seed(3)
    aug = GeometryCutMix(alpha=1.0, per_sample_box=per_sample_box)
    inputs = distinct_batch()
    scores = F.one_hot(torch.arange(6), 6).float()
    mixed, mixed_scores = aug(inputs.clone(), scores)
    geo = aug.pop_geometry()
    assert aug.pop_geometry() is None  # read once
    for i in range(6):
        x1, y1, x2, y2 = (int(v) for v in geo.boxes[i])
        inside = torch.zeros(12, 16, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        assert torch.all(mixed[i][:, inside] == geo.partner[i])
        assert torch.all(mixed[i][:, ~inside] == i)
        lam = 1 - inside.float().mean()
        expected = lam * scores[i] + (1 - lam) * scores[geo.partner[i]]
        torch.testing.assert_close(mixed_scores[i], expected)
    if per_sample_box:
        assert len({tuple(b.tolist()) for b in geo.boxes}) > 1


def test_same_draws_as_stock_cutmix():
    inputs, scores = distinct_batch(), F.one_hot(torch.arange(6), 6).float()
    np.random.seed(7)
    torch.manual_seed(7)
    ours = GeometryCutMix(alpha=1.0)(inputs.clone(), scores)
    np.random.seed(7)
    torch.manual_seed(7)
    stock = CutMix(alpha=1.0)(inputs.clone(), scores)
    torch.testing.assert_close(ours[0], stock[0])
    torch.testing.assert_close(ours[1], stock[1])


def test_geometry_keeps_the_batch_before_pasting():
    aug = GeometryCutMix(alpha=1.0)
    inputs = distinct_batch()
    aug(inputs.clone(), F.one_hot(torch.arange(6), 6).float())
    torch.testing.assert_close(aug.pop_geometry().unmixed, inputs)


@pytest.mark.parametrize('alpha', [0, -1.0, 'one'])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match='alpha must be a positive float'):
        GeometryCutMix(alpha=alpha)


def build_preprocessor(augments, probs=None, hands_mix=True):
    pre = MODELS.build(dict(
        type='SAOLDataPreprocessor', num_classes=6,
        batch_augments=dict(augments=augments, probs=probs)))
    pre.hands_mix = hands_mix  # as SAOLClassifier sets it
    return pre


def preprocess(pre, training=True):
    data = dict(inputs=[torch.full((3, 8, 8), float(i)) for i in range(6)],
                data_samples=[DataSample().set_gt_label(i) for i in range(6)])
    return pre(data, training)


def test_preprocessor_hands_the_geometry_to_forward():
    pre = build_preprocessor(dict(type='GeometryCutMix', alpha=1.0))
    out = preprocess(pre)
    geometry = out['mix']
    assert geometry.boxes.shape == (6, 4)
    assert geometry.image_size == (8, 8)
    assert sorted(geometry.partner.tolist()) == list(range(6))
    # The batch before pasting, and the samples untouched.
    torch.testing.assert_close(
        geometry.unmixed[:, 0, 0, 0], torch.arange(6.))
    samples = out['data_samples']
    assert [int(s.gt_label) for s in samples] == list(range(6))
    assert all('mix' not in s.metainfo_keys() for s in samples)
    assert 'mix' not in preprocess(pre, training=False)
    # For a stock ImageClassifier (its forward takes no `mix`): no key.
    pre.hands_mix = False
    assert set(preprocess(pre)) == {'inputs', 'data_samples'}


def test_stock_classifier_trains_with_the_geometry_preprocessor():
    """ImageClassifier + SAOLDataPreprocessor + GeometryCutMix: a stock
    model trains as with mmpretrain's CutMix."""
    from mmengine.optim import OptimWrapper
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                      base_channels=8, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=6, in_channels=64,
                  loss=dict(type='CrossEntropyLoss', use_soft=True)),
        data_preprocessor=dict(type='SAOLDataPreprocessor', num_classes=6),
        train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0))))
    data = dict(inputs=[torch.rand(3, 16, 16) * 255 for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    log_vars = model.train_step(data, OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1)))
    assert set(log_vars) == {'loss'} and torch.isfinite(log_vars['loss'])


def test_mixup_or_identity_batches_carry_no_geometry():
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0),
                              dict(type='Mixup', alpha=1.0)], probs=[0., 1.])
    assert 'mix' not in preprocess(pre)
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0)],
                             probs=[0.])
    assert 'mix' not in preprocess(pre)
    # A CutMix batch followed by an identity batch: no stale box.
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0)],
                             probs=[1.])
    assert 'mix' in preprocess(pre)
    pre.batch_augments.probs = [0., 1.]
    assert 'mix' not in preprocess(pre)
