"""SAOLHead against an independent computation of the paper's formula."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

IN_CHANNELS = (8, 16, 32)


def make_feats(n=3, channels=IN_CHANNELS, sizes=(16, 8, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, c, s, s, generator=g)
                 for c, s in zip(channels, sizes))


def build_head(**kw):
    cfg = dict(type='SAOLHead', num_classes=5, in_channels=IN_CHANNELS,
               channels=8)
    cfg.update(kw)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def reference_output(head, feats):
    """Eq. 1-2 written out directly, without any helper of the head."""
    grid = feats[-1].shape[-2:]
    parts = []
    for conv, f in zip(head.reduce_convs, feats):
        parts.append(conv(F.adaptive_avg_pool2d(f, grid)))
    fused = torch.cat(parts, 1)
    a_logits = head.attention(parts[-1]).flatten(1)
    attention = torch.softmax(a_logits, 1).view(-1, *grid)
    spatial = torch.softmax(head.spatial_cls(fused), 1)
    y = (attention[:, None] * spatial).sum(dim=(2, 3))
    return attention, spatial, y


def test_matches_independent_formula():
    head = build_head(zero_init_attention=False).eval()
    feats = make_feats()
    out = head.saol_outputs(feats)
    attention, spatial, y = reference_output(head, feats)
    torch.testing.assert_close(out.log_attention.exp(), attention)
    torch.testing.assert_close(out.log_spatial.exp(), spatial)
    torch.testing.assert_close(out.log_probs.exp(), y)
    torch.testing.assert_close(head(feats), torch.log(y))
    assert out.log_probs.shape == (3, 5)
    assert out.log_attention.shape == (3, 4, 4)
    assert out.log_spatial.shape == (3, 5, 4, 4)


def test_distributions_sum_to_one_and_softmax_is_identity():
    head = build_head(zero_init_attention=False).eval()
    out = head.saol_outputs(make_feats())
    ones = torch.ones(3)
    torch.testing.assert_close(out.log_attention.exp().sum((1, 2)), ones)
    torch.testing.assert_close(out.log_probs.exp().sum(1), ones)
    torch.testing.assert_close(out.log_spatial.exp().sum(1),
                               torch.ones(3, 4, 4))
    # softmax(log y) == y: stock predictors see SAOL's own distribution.
    pred = head.predict(make_feats())
    torch.testing.assert_close(torch.stack([p.pred_score for p in pred]),
                               out.log_probs.exp())


def test_zero_init_attention_is_uniform():
    head = build_head()
    attention = head.saol_outputs(make_feats()).log_attention.exp()
    torch.testing.assert_close(attention, torch.full_like(attention, 1 / 16))


@pytest.mark.parametrize('attention_input', ['reduced', 'last'])
def test_gradients_reach_every_parameter(attention_input):
    head = build_head(zero_init_attention=False,
                      attention_input=attention_input,
                      distillation=dict()).train()
    feats = tuple(f.requires_grad_() for f in make_feats())
    losses = head.loss(feats, samples([0, 1, 4]))
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for f in feats:
        assert f.grad.abs().sum() > 0


def test_loss_is_cross_entropy_of_y():
    head = build_head(zero_init_attention=False)
    feats = make_feats()
    losses = head.loss(feats, samples([0, 1, 4]))
    y = head.saol_outputs(feats).log_probs.exp()
    expected = -torch.log(y[torch.arange(3), torch.tensor([0, 1, 4])]).mean()
    torch.testing.assert_close(losses['loss_cls'], expected)


def test_soft_targets_and_float32_under_autocast():
    head = build_head(loss=dict(type='CrossEntropyLoss', use_soft=True))
    feats = make_feats()
    data = samples([0, 1, 2])
    for d in data:
        d.set_gt_score(torch.full((5, ), 0.2))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = head.saol_outputs(feats)
        losses = head.loss(feats, data)
    assert out.log_probs.dtype == torch.float32
    assert out.log_attention.dtype == torch.float32
    assert torch.isfinite(losses['loss_cls'])


def test_non_square_and_upsampled_scales():
    head = build_head()
    feats = (torch.randn(2, 8, 12, 20), torch.randn(2, 16, 3, 5),
             torch.randn(2, 32, 6, 10))
    out = head.saol_outputs(feats)
    assert out.log_spatial.shape == (2, 5, 6, 10)
    torch.testing.assert_close(out.log_probs.exp().sum(1), torch.ones(2))


def test_batch_of_one_and_one_by_one_maps():
    head = build_head().eval()
    feats = make_feats(n=1, sizes=(4, 2, 1))
    out = head.saol_outputs(feats)
    assert out.log_attention.shape == (1, 1, 1)
    torch.testing.assert_close(out.log_attention.exp(), torch.ones(1, 1, 1))


def test_maps_attached_on_request():
    head = build_head(zero_init_attention=False, maps_topk=2).eval()
    feats = make_feats()
    pred = head.predict(feats, with_maps=True)
    out = head.saol_outputs(feats)
    for i, p in enumerate(pred):
        assert p.attention_map.shape == (4, 4)
        assert p.class_maps.shape == (2, 4, 4)
        # each class map sums to that class's output probability
        torch.testing.assert_close(
            p.class_maps.sum((1, 2)), out.log_probs[i].exp()[
                p.class_map_labels])
        assert int(p.class_map_labels[0]) == int(p.pred_label)


@pytest.mark.parametrize('cfg, feats, match', [
    (dict(in_channels=(8, 16, 64)), make_feats(),
     r'head.in_channels=\(8, 16, 32\)'),
    (dict(in_channels=(16, 32)), make_feats(),
     r'received 3 feature maps.*backbone.out_indices'),
    (dict(), (torch.randn(2, 32), ), r'model.neck=None'),
])
def test_wrong_feature_config_names_the_field(cfg, feats, match):
    head = build_head(**cfg)
    with pytest.raises(ValueError, match=match):
        head(feats)


@pytest.mark.parametrize('cfg, match', [
    (dict(num_classes=0), 'num_classes'),
    (dict(in_channels=()), 'head.in_channels'),
    (dict(in_channels=(8, -1)), 'head.in_channels'),
    (dict(test_output='gapfc'), 'head.distillation'),
    (dict(test_output='cam'), 'head.test_output'),
    (dict(attention_input='raw'), 'head.attention_input'),
    (dict(self_supervision=dict(target='box')),
     'self_supervision.target'),
    (dict(self_supervision=dict(target='label',
                                attention_loss=dict(type='AttentionLoss'))),
     'attention_loss=None'),
    (dict(distillation=dict(temperature=2.0)), 'head.distillation accepts'),
])
def test_build_errors_name_the_field(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_head(**cfg)


def test_label_beyond_num_classes_is_explained():
    head = build_head()
    with pytest.raises(ValueError, match='head.num_classes=5'):
        head.loss(make_feats(), samples([0, 1, 7]))


def test_pre_logits_is_attention_pooled_fused_feature():
    head = build_head(zero_init_attention=False).eval()
    feats = make_feats()
    emb = head.pre_logits(feats)
    assert emb.shape == (3, 8 * 3)
    grid = feats[-1].shape[-2:]
    fused = torch.cat([conv(F.adaptive_avg_pool2d(f, grid))
                       for conv, f in zip(head.reduce_convs, feats)], 1)
    attention, _, _ = reference_output(head, feats)
    torch.testing.assert_close(
        emb, (fused * attention[:, None]).sum(dim=(2, 3)))


@pytest.mark.parametrize('kw, width', [
    (dict(), 2),                          # channels=8 -> a quarter
    (dict(channels=2), 1),                # never below one channel
    (dict(attention_channels=5), 5),      # explicit width wins
])
def test_attention_branch_width(kw, width):
    head = build_head(**kw)
    hidden = head.attention[0].conv
    assert hidden.out_channels == width
    assert head.attention[-1].in_channels == width
    assert hidden.kernel_size == (3, 3)


def test_attention_output_conv_has_no_bias():
    """A constant added to every position before the spatial softmax cannot
    change ``A``; the head therefore has no such parameter."""
    head = build_head()
    assert head.attention[-1].bias is None
    logits = torch.randn(3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(torch.softmax(logits.flatten(1), 1),
                               torch.softmax(logits.flatten(1) + 7.5, 1))


def test_checkpoint_with_the_old_attention_bias_loads():
    """mmsaol 0.1.0 checkpoints carry ``attention.1.bias``: loading drops
    it (strictly, no unexpected key) and the outputs are unchanged."""
    head = build_head(zero_init_attention=False).eval()
    old = dict(head.state_dict())
    old['attention.1.bias'] = torch.tensor([3.0])
    fresh = build_head().eval()
    fresh.load_state_dict(old, strict=True)
    assert 'attention.1.bias' in old  # the caller's dict is not changed
    feats = make_feats()
    assert torch.equal(fresh(feats), head(feats))
