"""ShakeDrop regularisation (Yamada, Iwamura, Akiba, Kise, IEEE Access
2019)."""
from __future__ import annotations

from typing import Any, Tuple

import torch
from mmcv.cnn.bricks import DropPath
from torch import Tensor


def _per_sample(coefficient: Tensor, like: Tensor) -> Tensor:
    """``(N,)`` coefficients shaped ``(N, 1, ..., 1)`` to scale ``like``."""
    return coefficient.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


class _ShakeDropFunction(torch.autograd.Function):
    """``x * (b + alpha - b*alpha)`` forward, ``g * (b + beta - b*beta)``
    backward (ShakeDrop paper, Eq. 6 and its backward rule)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, gate: Tensor, alpha: Tensor,
                beta: Tensor) -> Tensor:
        ctx.save_for_backward(gate, beta)
        return x * _per_sample(gate + alpha - gate * alpha, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None, None, None]:
        gate, beta = ctx.saved_tensors
        return grad * _per_sample(gate + beta - gate * beta, grad), \
            None, None, None


def shake_drop(x: Tensor, gate: Tensor, alpha: Tensor,
               beta: Tensor) -> Tensor:
    """ShakeDrop of a residual branch with given random coefficients.

    `ShakeDrop Regularization for Deep Residual Learning
    <https://arxiv.org/abs/1802.02375>`_, Eq. 6: the branch ``F(x)`` of
    sample i is multiplied by ``b_i + alpha_i - b_i alpha_i`` in the forward
    pass, and its gradient by ``b_i + beta_i - b_i beta_i`` in the backward
    pass (``b_i = 1``: the branch passes unchanged both ways).

    Args:
        x (Tensor): ``(N, ...)`` output of the residual branch.
        gate (Tensor): ``(N,)`` Bernoulli gates ``b`` (1 keeps the branch).
        alpha (Tensor): ``(N,)`` forward coefficients.
        beta (Tensor): ``(N,)`` backward coefficients.

    Returns:
        Tensor: the scaled branch, same shape and dtype as ``x``.
    """
    return _ShakeDropFunction.apply(x, gate, alpha, beta)


class ShakeDrop(DropPath):
    """ShakeDrop on a residual branch (Yamada et al., IEEE Access 2019).

    `ShakeDrop Regularization for Deep Residual Learning
    <https://arxiv.org/abs/1802.02375>`_. In training, every sample draws a
    gate ``b ~ Bernoulli(1 - drop_prob)``, a forward coefficient
    ``alpha ~ U[alpha_range]`` and a backward coefficient
    ``beta ~ U[beta_range]`` (see :func:`shake_drop`). Choices, each after
    the paper:

    - ``b``, ``alpha`` and ``beta`` are drawn per image: ``alpha`` and
      ``beta`` as in owruby/shake-drop_pytorch (the paper's summary also
      allows one per element), the gate per image rather than that
      implementation's one gate per batch, so the images of a batch are
      perturbed independently;
    - ``alpha ~ U[-1, 1]``, ``beta ~ U[0, 1]`` (the paper's recommended
      ranges for PyramidNet);
    - at test time the branch is multiplied by the expectation of the
      forward coefficient, ``E[b + alpha - b alpha] = (1 - p) +
      p * E[alpha]`` (paper Eq. 7 with its ``p_l`` the keep probability
      ``1 - drop_prob``; ``E[alpha] = 0`` for ``U[-1, 1]``, so the factor
      is ``1 - drop_prob``).

    ShakeDrop generalises RandomDrop (stochastic depth, Huang et al. 2016;
    ``alpha = beta = 0``), which mmcv's :class:`DropPath` implements; as its
    subclass it is switched off wherever code switches stochastic layers
    off for a deterministic forward (e.g. the un-mixed forward of
    :class:`SAOLClassifier`, whose self-annotated targets are the network's
    prediction, not a randomly perturbed one).

    Args:
        drop_prob (float): Probability ``p`` that a sample's branch is
            perturbed (``b = 0``). ``0`` makes the module the identity.
        alpha_range (Tuple[float, float]): Range of ``alpha``. Defaults to
            ``(-1.0, 1.0)``.
        beta_range (Tuple[float, float]): Range of ``beta``. Defaults to
            ``(0.0, 1.0)``.
    """

    def __init__(self,
                 drop_prob: float,
                 alpha_range: Tuple[float, float] = (-1.0, 1.0),
                 beta_range: Tuple[float, float] = (0.0, 1.0)) -> None:
        if not 0 <= drop_prob <= 1:
            raise ValueError('ShakeDrop: drop_prob must be in [0, 1] (e.g. '
                             f'shakedrop_prob=0.5), got {drop_prob}.')
        for name, (low, high) in (('alpha_range', alpha_range),
                                  ('beta_range', beta_range)):
            if not low <= high:
                raise ValueError(f'ShakeDrop: {name} must be (low, high) '
                                 f'with low <= high, got {(low, high)}.')
        super().__init__(float(drop_prob))
        self.alpha_range = tuple(float(v) for v in alpha_range)
        self.beta_range = tuple(float(v) for v in beta_range)

    @property
    def test_scale(self) -> float:
        """``E[b + alpha - b alpha]``, the factor applied at test time."""
        mean_alpha = sum(self.alpha_range) / 2
        return 1 - self.drop_prob + self.drop_prob * mean_alpha

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0:
            return x
        if not self.training:
            return x * self.test_scale
        n = x.size(0)
        gate = torch.bernoulli(torch.full((n, ), 1 - self.drop_prob,
                                          device=x.device))
        alpha = torch.empty(n, device=x.device).uniform_(*self.alpha_range)
        beta = torch.empty(n, device=x.device).uniform_(*self.beta_range)
        return shake_drop(x, gate, alpha, beta)

    def extra_repr(self) -> str:
        return (f'drop_prob={self.drop_prob:.4f}, '
                f'alpha_range={self.alpha_range}, '
                f'beta_range={self.beta_range}')
