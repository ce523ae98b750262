"""GeometryCutMix and SAOLDataPreprocessor: the recorded geometry is what
was pasted, and it reaches every DataSample."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.utils.batch_augments import CutMix
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.models.batch_augments import GeometryCutMix
from mmsaol.structures import MIX_GEOMETRY, mix_geometry


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


def build_preprocessor(augments, probs=None):
    return MODELS.build(dict(
        type='SAOLDataPreprocessor', num_classes=6,
        batch_augments=dict(augments=augments, probs=probs)))


def preprocess(pre, training=True):
    data = dict(inputs=[torch.full((3, 8, 8), float(i)) for i in range(6)],
                data_samples=[DataSample().set_gt_label(i) for i in range(6)])
    return pre(data, training)


def test_preprocessor_attaches_geometry():
    pre = build_preprocessor(dict(type='GeometryCutMix', alpha=1.0))
    out = preprocess(pre)
    samples = out['data_samples']
    geometry = mix_geometry(samples)
    assert geometry.boxes.shape == (6, 4)
    assert geometry.image_size == (8, 8)
    assert sorted(geometry.partner.tolist()) == list(range(6))
    # One object for the batch, and the batch before pasting in it.
    assert all(s.metainfo[MIX_GEOMETRY] is geometry for s in samples)
    torch.testing.assert_close(
        geometry.unmixed[:, 0, 0, 0], torch.arange(6.))
    assert [int(s.gt_label) for s in samples] == list(range(6))
    assert mix_geometry(preprocess(pre, training=False)['data_samples']) \
        is None
    with pytest.raises(ValueError, match='regrouped or copied'):
        mix_geometry(samples[:3])


def test_mixup_or_identity_batches_carry_no_geometry():
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0),
                              dict(type='Mixup', alpha=1.0)], probs=[0., 1.])
    assert mix_geometry(preprocess(pre)['data_samples']) is None
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0)],
                             probs=[0.])
    assert mix_geometry(preprocess(pre)['data_samples']) is None
    # A CutMix batch followed by an identity batch: no stale box.
    pre = build_preprocessor([dict(type='GeometryCutMix', alpha=1.0)],
                             probs=[1.])
    assert mix_geometry(preprocess(pre)['data_samples']) is not None
    pre.batch_augments.probs = [0., 1.]
    assert mix_geometry(preprocess(pre)['data_samples']) is None
