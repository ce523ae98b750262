"""ShakeDrop (Yamada et al., IEEE Access 2019): forward scaled by
``b + alpha - b*alpha``, backward by ``b + beta - b*beta``, the expectation
at test time, and the linear rule of drop probabilities in PyramidNet."""
from __future__ import annotations

import pytest
import torch

from mmsaol.models.backbones import PyramidNet, ShakeDrop, shake_drop
from mmsaol.models.classifiers.saol_classifier import frozen_norm_statistics

F64 = dict(dtype=torch.float64)
GATE = torch.tensor([1.0, 0.0, 0.0, 1.0], **F64)
ALPHA = torch.tensor([0.3, -0.7, 0.5, -0.2], **F64)
BETA = torch.tensor([0.2, 0.9, 0.4, 0.6], **F64)


def test_fixed_coefficients_scale_forward_by_alpha_backward_by_beta():
    """Kept samples (b = 1) pass unchanged both ways; dropped ones are
    multiplied by alpha forward and their gradient by beta backward."""
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    y = shake_drop(x, GATE, ALPHA, BETA)
    forward = torch.tensor([1.0, -0.7, 0.5, 1.0], dtype=torch.float64)
    backward = torch.tensor([1.0, 0.9, 0.4, 1.0], dtype=torch.float64)
    # float64: b + a - b*a rounds to within 1e-16 of 1 or a.
    torch.testing.assert_close(y, x * forward.view(-1, 1, 1, 1))
    y.backward(grad)
    torch.testing.assert_close(x.grad, grad * backward.view(-1, 1, 1, 1))
    assert y.dtype == x.dtype


def test_module_uses_its_draws_forward_and_backward():
    """In training the module draws (b, alpha, beta) per sample in this
    order from the global generator: replaying the generator gives the
    exact coefficients of both passes."""
    module = ShakeDrop(0.5).train()
    x = torch.randn(64, 2, requires_grad=True)
    torch.manual_seed(3)
    y = module(x)
    y.sum().backward()
    torch.manual_seed(3)
    gate = torch.bernoulli(torch.full((64, ), 0.5))
    alpha = torch.empty(64).uniform_(-1, 1)
    beta = torch.empty(64).uniform_(0, 1)
    assert 0 < gate.sum() < 64  # both kinds of sample are present
    torch.testing.assert_close(
        y, x * (gate + alpha - gate * alpha)[:, None], rtol=0, atol=0)
    torch.testing.assert_close(
        x.grad, (gate + beta - gate * beta)[:, None].expand(64, 2),
        rtol=0, atol=0)


@pytest.mark.parametrize('p,alpha_range,scale', [
    (0.5, (-1.0, 1.0), 0.5),
    (0.2, (-1.0, 1.0), 0.8),
    (0.5, (0.0, 1.0), 0.75),  # E[alpha] = 0.5: 0.5 + 0.5 * 0.5
])
def test_test_time_scale_is_the_expected_forward_coefficient(
        p, alpha_range, scale):
    module = ShakeDrop(p, alpha_range=alpha_range)
    x = torch.randn(3, 4)
    torch.testing.assert_close(module.eval()(x), x * scale)
    # The mean training coefficient over 200,000 samples: its standard
    # error is below 0.0015 (the coefficient's std is at most 0.65).
    torch.manual_seed(0)
    coefficients = module.train()(torch.ones(200_000, 1))
    assert abs(coefficients.mean().item() - scale) < 0.01


def test_zero_probability_is_the_identity():
    x = torch.randn(2, 3)
    assert ShakeDrop(0.0).train()(x) is x


def test_pyramidnet_probabilities_rise_linearly_to_the_final_value():
    """Block l of L gets ``p * l / L`` (the paper's linear decay rule of the
    keep probability, final value 0.5)."""
    backbone = PyramidNet(depth=20, alpha=12, shakedrop_prob=0.5)
    probs = [block.shake_drop.drop_prob for stage in (1, 2, 3)
             for block in getattr(backbone, f'layer{stage}')]
    assert probs == pytest.approx([0.5 * k / 6 for k in range(1, 7)])


def test_bad_ranges_say_what_to_change():
    with pytest.raises(ValueError, match='alpha_range must be'):
        ShakeDrop(0.5, alpha_range=(1.0, -1.0))


def test_saol_unmixed_forward_runs_shakedrop_at_its_expectation():
    """SAOL's un-mixed forward (the self-annotated targets) switches
    stochastic layers off: ShakeDrop then scales by its expectation and
    the targets do not depend on the random state."""
    backbone = PyramidNet(depth=11, alpha=12, shakedrop_prob=0.5,
                          out_indices=(0, 1, 2))
    backbone.train()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), frozen_norm_statistics(backbone, 'batch'):
        assert not backbone.layer3[0].shake_drop.training
        outs = [backbone(x) for _ in range(2)]
        backbone.apply(lambda m: m.train() if isinstance(m, ShakeDrop)
                       else None)
        torch.manual_seed(0)
        shaken = backbone(x)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0][-1], shaken[-1])
    assert backbone.layer3[0].shake_drop.training
