"""SAOLHead options chosen by the Fashion-MNIST study: attention-weighted
CutMix labels (``label_mix``) and the scale fusion order (``fusion_order``).
"""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.structures import MixContext, MixGeometry

IN_CHANNELS = (8, 16)


def feats(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 8, 8, 8, generator=g),
            torch.randn(n, 16, 4, 4, generator=g))


def head(label_mix='attention', **kw):
    h = MODELS.build(dict(type='SAOLHead', num_classes=3,
                          in_channels=IN_CHANNELS, channels=8,
                          label_mix=label_mix,
                          loss=dict(type='CrossEntropyLoss', use_soft=True),
                          **kw))
    return h.eval()


def mixed_samples(box, partner, labels=(0, 1, 2, 0), lam=0.5):
    out = []
    for i, label in enumerate(labels):
        s = DataSample().set_gt_label(label)
        # CutMix's area-mixed score, which 'attention' replaces.
        s.set_gt_score(lam * F.one_hot(torch.tensor(label), 3).float() +
                       (1 - lam) * F.one_hot(
                           torch.tensor(labels[partner[i]]), 3).float())
        out.append(s)
    n = len(labels)
    geometry = MixGeometry(
        boxes=torch.tensor([box] * n, dtype=torch.float32),
        partner=torch.tensor(partner),
        image_size=(32, 32), unmixed=torch.zeros(n, 3, 32, 32))
    return out, MixContext(geometry)


def attention_target(h, out, samples, mix):
    return h._attention_mixed_target(out, mix,
                                     h._pasting(mix, out, samples))


def test_uniform_attention_mixes_by_cell_area():
    """Zero-initialised (uniform) attention: the partner's share is the
    pasted fraction of the 4x4 grid, 4 of 16 cells for a 16x16 box."""
    h = head()
    out = h.saol_outputs(feats())
    partner = [1, 0, 3, 2]
    samples, mix = mixed_samples((0, 0, 16, 16), partner)
    target = attention_target(h, out, samples, mix)
    labels = torch.tensor([0, 1, 2, 0])
    expected = 0.75 * F.one_hot(labels, 3).float() + \
        0.25 * F.one_hot(labels[partner], 3).float()
    torch.testing.assert_close(target, expected)


def test_attention_inside_the_box_gives_the_partner_label():
    """All attention mass on a pasted cell: the target is the partner's
    label; on an own cell, the image's own label."""
    h = head()
    out = h.saol_outputs(feats())
    log_a = torch.full((4, 4, 4), -1e4)
    log_a[:2, 0, 0] = 0.0   # inside the pasted 8x8 box (cell 0, 0)
    log_a[2:, 3, 3] = 0.0   # outside
    out = out._replace(
        log_attention=log_a.flatten(1).log_softmax(1).view(4, 4, 4))
    partner = [1, 0, 3, 2]
    samples, mix = mixed_samples((0, 0, 8, 8), partner)
    target = attention_target(h, out, samples, mix)
    labels = torch.tensor([0, 1, 2, 0])
    expected = torch.cat([F.one_hot(labels[partner][:2], 3),
                          F.one_hot(labels[2:], 3)]).float()
    torch.testing.assert_close(target, expected, atol=1e-6, rtol=0)


def test_area_is_unchanged_and_unmixed_batches_keep_their_target():
    samples, mix = mixed_samples((0, 0, 16, 16), [1, 0, 3, 2])
    clean = [DataSample().set_gt_label(i % 3) for i in range(4)]
    for s in clean:
        s.set_gt_score(F.one_hot(s.gt_label, 3).float()[0])
    torch.manual_seed(0)
    area, attention = head('area'), head('attention')
    attention.load_state_dict(area.state_dict())
    x = feats()
    torch.testing.assert_close(
        attention.loss(x, clean, mix=MixContext())['loss_cls'],
        area.loss(x, clean)['loss_cls'])
    # The area mix differs from the 4-of-16-cells attention mix here
    # (lam 0.5 vs 0.75).
    assert not torch.allclose(attention.loss(x, samples, mix=mix)['loss_cls'],
                              area.loss(x, samples, mix=mix)['loss_cls'])


def test_label_mix_needs_the_geometry():
    base = dict(type='SAOLClassifier',
                backbone=dict(type='ResNet_CIFAR', depth=18,
                              out_indices=(2, 3)),
                neck=None,
                head=dict(type='SAOLHead', num_classes=3,
                          in_channels=(256, 512), label_mix='attention'))
    with pytest.raises(ValueError, match="label_mix='attention' is set but"):
        MODELS.build(dict(base, train_cfg=dict(
            augments=dict(type='CutMix', alpha=1.0))))
    MODELS.build(dict(base, train_cfg=dict(
        augments=dict(type='GeometryCutMix', alpha=1.0))))
    # A stock ImageClassifier hands the head no geometry.
    with pytest.raises(ValueError, match="label_mix='attention' needs model"):
        head().loss(feats(), mixed_samples((0, 0, 8, 8), [1, 0, 3, 2])[0])
    with pytest.raises(ValueError, match='label_mix must be one of'):
        head('box')


def test_fusion_orders_share_parameters_and_differ_in_output():
    torch.manual_seed(0)
    a = head('area', zero_init_attention=False)
    b = head('area', zero_init_attention=False,
             fusion_order='reduce_then_resize')
    b.load_state_dict(a.state_dict())
    x = feats()
    ya, yb = a(x), b(x)
    assert ya.shape == yb.shape == (4, 3)
    # BN + ReLU between the 1x1 conv and the pooling: the orders differ.
    assert not torch.allclose(ya, yb)
    with pytest.raises(ValueError, match='fusion_order must be one of'):
        head('area', fusion_order='concat')
