"""CutMix location-specific self-supervision: losses, targets, gradients,
and the checks that it is wired up."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.models import (
    AttentionLoss,
    SpatialLogitsLoss,
    frozen_norm_statistics,
)
from mmsaol.structures import MixContext, MixGeometry

IN_CHANNELS = (8, 16)


def feats(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 8, 8, 8, generator=g),
            torch.randn(n, 16, 4, 4, generator=g))


def head(target='self', **kw):
    h = MODELS.build(dict(type='SAOLHead', num_classes=3,
                          in_channels=IN_CHANNELS, channels=8,
                          zero_init_attention=False,
                          self_supervision=dict(target=target, **kw)))
    return h.eval()


def clean_outputs(h, clean_feats):
    """What SAOLClassifier hands the head: the un-mixed maps, no grad."""
    with torch.no_grad():
        return h.saol_outputs(clean_feats)


def samples(labels=(0, 1, 2, 0)):
    return [DataSample().set_gt_label(label) for label in labels]


def mix(box, partner, unmixed=None, image_size=(32, 32)):
    """What SAOLClassifier hands the head for a GeometryCutMix batch."""
    n = len(partner)
    geometry = MixGeometry(
        boxes=torch.tensor([box] * n, dtype=torch.float32),
        partner=torch.tensor(partner),
        image_size=image_size, unmixed=torch.zeros(n, 3, *image_size))
    return MixContext(geometry, unmixed)


@pytest.mark.parametrize('loss_cls, shape, dims', [
    (SpatialLogitsLoss, (4, 3, 5, 5), 1), (AttentionLoss, (4, 5, 5), (1, 2))])
def test_losses_zero_at_target_positive_elsewhere(loss_cls, shape, dims):
    logits = torch.randn(shape)
    log_p = torch.log_softmax(logits.flatten(1) if dims != 1 else logits,
                              dim=1).view(shape)
    loss = loss_cls()
    assert loss(log_p, log_p.exp()).abs() < 1e-6
    other = torch.log_softmax(torch.randn(shape).flatten(1) if dims != 1
                              else torch.randn(shape), dim=1).view(shape)
    assert loss(log_p, other.exp()) > 1e-3
    ce = loss_cls(criterion='ce')
    entropy = -(log_p.exp() * log_p).sum(dims).mean()
    torch.testing.assert_close(ce(log_p, log_p.exp()), entropy)
    weight = torch.tensor([1., 0., 0., 0.])
    torch.testing.assert_close(loss(other, log_p.exp(), weight),
                               loss(other[:1], log_p[:1].exp()))


def test_self_targets_give_zero_loss_when_mixed_equals_pasted_clean():
    h = head()
    clean = feats()
    partner = [2, 3, 0, 1]
    # Whole image pasted: the mixed image IS the partner.
    mixed = tuple(f[partner] for f in clean)
    losses = h.loss(mixed, samples(),
                    mix=mix((0, 0, 32, 32), partner, clean_outputs(h, clean)))
    assert losses['loss_spatial'].abs() < 1e-6
    assert losses['loss_attention'].abs() < 1e-6
    # Nothing pasted: the target is the image itself.
    losses = h.loss(clean, samples(),
                    mix=mix((5, 5, 5, 5), partner, clean_outputs(h, clean)))
    assert losses['loss_spatial'].abs() < 1e-6
    assert losses['loss_attention'].abs() < 1e-6
    # A real box with unrelated maps: positive.
    losses = h.loss(feats(seed=1), samples(),
                    mix=mix((0, 8, 16, 32), partner, clean_outputs(h, clean)))
    assert losses['loss_spatial'] > 1e-3 and losses['loss_attention'] > 1e-3


def test_label_targets():
    h = head(target='label')
    f = feats()
    partner = [1, 0, 3, 2]
    labels = (0, 1, 2, 0)
    losses = h.loss(f, samples(labels), mix=mix((0, 0, 16, 32), partner))
    out = h.saol_outputs(f)
    # Left half (x < 16) of the 4x4 grid is the partner's label.
    expected = []
    for i, p in enumerate(partner):
        target = torch.full((4, 4), labels[i])
        target[:, :2] = labels[p]
        logp = out.log_spatial[i].gather(0, target[None]).squeeze(0)
        expected.append(-logp.mean())
    torch.testing.assert_close(losses['loss_spatial'],
                               torch.stack(expected).mean())
    assert 'loss_attention' not in losses


def grads_of(h, loss):
    h.zero_grad()
    loss.backward(retain_graph=True)
    return {n for n, p in h.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradients_reach_the_right_branch():
    h = head()
    clean = feats()
    losses = h.loss(feats(seed=2), samples(),
                    mix=mix((0, 0, 16, 16), [1, 0, 3, 2],
                            clean_outputs(h, clean)))
    spatial = grads_of(h, losses['loss_spatial'])
    assert any(n.startswith('spatial_cls') for n in spatial)
    assert not any(n.startswith('attention') for n in spatial)
    attention = grads_of(h, losses['loss_attention'])
    assert any(n.startswith('attention') for n in attention)
    assert not any(n.startswith('spatial_cls') for n in attention)


def test_unmixed_batch_gives_zero_losses_in_graph():
    h = head()
    f = tuple(x.requires_grad_() for x in feats())
    plain = [DataSample().set_gt_label(0) for _ in range(4)]
    losses = h.loss(f, plain, mix=MixContext())
    assert losses['loss_spatial'] == 0 and losses['loss_attention'] == 0
    assert losses['loss_spatial'].requires_grad


def test_self_mode_without_unmixed_batch_explains():
    h = head()
    with pytest.raises(RuntimeError, match="model.type='SAOLClassifier'"):
        h.loss(feats(), samples(), mix=mix((0, 0, 16, 16), [1, 0, 3, 2]))
    with pytest.raises(ValueError, match="model.type='SAOLClassifier'"):
        h.loss(feats(), samples())


MODEL = dict(
    type='SAOLClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8, out_indices=(2, 3)),
    neck=None,
    head=dict(type='SAOLHead', num_classes=3, in_channels=(32, 64),
              channels=8, loss=dict(type='CrossEntropyLoss', use_soft=True),
              self_supervision=dict(target='self')),
    data_preprocessor=dict(num_classes=3),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)),
)


def build(**changes):
    cfg = {k: (dict(v) if isinstance(v, dict) else v)
           for k, v in MODEL.items()}
    cfg.update(changes)
    return MODELS.build(cfg)


def test_classifier_build_errors():
    with pytest.raises(ValueError, match='no GeometryCutMix'):
        build(train_cfg=dict(augments=dict(type='CutMix', alpha=1.0)))
    with pytest.raises(ValueError, match='no GeometryCutMix'):
        build(train_cfg=None)
    with pytest.raises(ValueError, match='SAOLDataPreprocessor'):
        build(data_preprocessor=dict(type='ClsDataPreprocessor',
                                     num_classes=3))
    with pytest.raises(ValueError, match='model.unmixed_norm'):
        build(unmixed_norm='eval')


def test_plain_image_classifier_with_self_mode_explains():
    model = build(type='ImageClassifier',
                  data_preprocessor=dict(type='SAOLDataPreprocessor',
                                         num_classes=3))
    data = dict(inputs=[torch.rand(3, 32, 32) * 255 for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i % 3)
                              for i in range(4)])
    batch = model.data_preprocessor(data, True)
    assert 'mix' not in batch  # a stock forward takes no `mix`
    with pytest.raises(ValueError, match="needs model.type='SAOLClassifier'"):
        model(**batch, mode='loss')


@pytest.mark.parametrize('mode', ['batch', 'running'])
def test_unmixed_forward_leaves_norm_statistics_untouched(mode):
    model = build(unmixed_norm=mode).train()
    before = {k: v.clone() for k, v in model.state_dict().items()
              if 'running' in k or 'num_batches' in k}
    with torch.no_grad(), frozen_norm_statistics(model, mode):
        model.extract_feat(torch.randn(4, 3, 32, 32))
    after = model.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)
    assert all(m.training for m in model.modules())


def test_training_step_with_self_supervision():
    torch.manual_seed(0)
    model = build().train()
    data = dict(inputs=[torch.rand(3, 32, 32) * 255 for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i % 3)
                              for i in range(4)])
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_spatial', 'loss_attention'}
    # The un-mixed maps keep what the targets read, not the backbone map.
    unmixed = model.unmixed_outputs(batch['mix'].unmixed)
    assert unmixed.last_feat is None and not unmixed.log_spatial.requires_grad
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_train_step_hands_the_geometry_to_forward():
    """mmengine's ``BaseModel.train_step`` passes the preprocessor's extra
    key ``'mix'`` to ``forward``: the spatial loss of a CutMix batch is
    positive (an exact zero without the geometry; the attention loss is 0
    here too, the zero-initialised attention being uniform)."""
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    model = build().train()
    assert model.head.needs_unmixed_batch
    data = dict(inputs=[torch.rand(3, 32, 32) * 255 for _ in range(4)],
                data_samples=[DataSample().set_gt_label(i % 3)
                              for i in range(4)])
    log_vars = model.train_step(data, OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.0)))
    assert log_vars['loss_spatial'] > 0


def test_unmixed_forward_is_deterministic():
    from mmcv.cnn.bricks import DropPath
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3),
                                torch.nn.Dropout(0.5), DropPath(0.5)).train()
    x = torch.randn(4, 3, 5, 5)
    with frozen_norm_statistics(model, 'batch'):
        assert not model[1].training and not model[2].training
        torch.testing.assert_close(model(x), model(x))
    assert all(m.training for m in model)
    assert model[0].track_running_stats


class MomentumNorm(torch.nn.Module):
    """The running-statistics rule of ``mmcv.ops.SyncBatchNorm.forward``
    (mmcv 2.x; not a ``_BatchNorm``, needs CUDA and compiled ops): in
    training, the statistics move by ``momentum`` whatever
    ``track_running_stats`` says."""

    def __init__(self) -> None:
        super().__init__()
        self.momentum = 0.1
        self.track_running_stats = True
        self.register_buffer('running_mean', torch.zeros(3))

    def forward(self, x):
        if self.training:
            self.running_mean.mul_(1 - self.momentum).add_(
                self.momentum * x.mean(dim=(0, 2, 3)))
        return x - self.running_mean[None, :, None, None]


def test_mmcv_sync_bn_is_frozen_too(monkeypatch):
    import mmsaol.models.classifiers.saol_classifier as module
    monkeypatch.setattr(module, 'synced_norm_types',
                        lambda: (torch.nn.SyncBatchNorm, MomentumNorm))
    model = torch.nn.Sequential(MomentumNorm()).train()
    with frozen_norm_statistics(model, 'batch'):
        model(torch.randn(4, 3, 5, 5) + 1)
    assert not model[0].running_mean.any()
    assert model[0].momentum == 0.1 and model[0].track_running_stats
    model(torch.ones(4, 3, 5, 5))  # outside: it updates again
    assert model[0].running_mean.any()


def test_synced_norm_types_without_compiled_mmcv():
    from mmsaol.models.classifiers.saol_classifier import synced_norm_types
    try:
        from mmcv.ops import SyncBatchNorm
    except ImportError:  # mmcv-lite
        assert synced_norm_types() == (torch.nn.SyncBatchNorm, )
    else:
        assert SyncBatchNorm in synced_norm_types()
