"""PyramidNet for CIFAR (Han, Kim, Kim, CVPR 2017), with ShakeDrop."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor

from .shakedrop import ShakeDrop


def zero_padded_shortcut(x: Tensor, channels: int, stride: int) -> Tensor:
    """The PyramidNet paper's shortcut: identity, average-pooled 2x2 for a
    stride-2 block, then zero channels appended up to ``channels``
    (PyramidNet paper, Sec. 3.2 and Fig. 5c; no projection parameters).

    The pooling uses ``ceil_mode=True`` as clovaai/CutMix-PyTorch does, so
    an odd input side gives the same output side as the strided 3x3 conv
    of the branch.
    """
    if stride != 1:
        x = F.avg_pool2d(x, stride, stride, ceil_mode=True)
    extra = channels - x.size(1)
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


class PyramidBlock(nn.Module):
    """A PyramidNet residual block (PyramidNet paper, Fig. 6d / 6b).

    Bottleneck: BN -> 1x1 conv -> BN -> ReLU -> 3x3 conv (stride) -> BN ->
    ReLU -> 1x1 conv (x4) -> BN; basic: BN -> 3x3 conv (stride) -> BN ->
    ReLU -> 3x3 conv -> BN. The paper's block: no ReLU on the block input
    (the first ReLU removed) and a BN after the last conv. The branch is
    then scaled by :class:`ShakeDrop` and added to the
    :func:`zero_padded_shortcut`.

    Args:
        in_channels (int): Input channels.
        channels (int): Width of the block (``out_channels / expansion``).
        stride (int): Stride of the block's 3x3 conv (1 or 2).
        bottleneck (bool): Bottleneck (expansion 4) or basic (expansion 1).
        drop_prob (float): ShakeDrop probability of this block.
        norm_cfg (dict): Norm layers.
    """

    def __init__(self, in_channels: int, channels: int, stride: int,
                 bottleneck: bool, drop_prob: float, norm_cfg: dict) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = channels * (4 if bottleneck else 1)
        if self.out_channels < in_channels:
            raise ValueError(
                'PyramidNet: the widths must not decrease (the zero-padded '
                f'shortcut cannot drop channels: {in_channels} -> '
                f'{self.out_channels}); use alpha >= 0.')
        if bottleneck:
            # Key names of dyhan0920/PyramidNet-PyTorch (bn1, conv1, ...),
            # so its checkpoints load.
            widths = [in_channels, channels, channels, self.out_channels]
            kernels, strides = (1, 3, 1), (1, stride, 1)
        else:
            widths = [in_channels, channels, channels]
            kernels, strides = (3, 3), (stride, 1)
        for i, (k, s) in enumerate(zip(kernels, strides), start=1):
            self.add_module(f'bn{i}', build_norm_layer(norm_cfg,
                                                       widths[i - 1])[1])
            self.add_module(f'conv{i}', nn.Conv2d(
                widths[i - 1], widths[i], k, s, k // 2, bias=False))
        self.add_module(f'bn{len(kernels) + 1}',
                        build_norm_layer(norm_cfg, widths[-1])[1])
        self.num_convs = len(kernels)
        self.relu = nn.ReLU(inplace=True)
        self.shake_drop = ShakeDrop(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for i in range(1, self.num_convs + 1):
            out = getattr(self, f'bn{i}')(out)
            if i > 1:
                out = self.relu(out)
            out = getattr(self, f'conv{i}')(out)
        out = getattr(self, f'bn{self.num_convs + 1}')(out)
        out = self.shake_drop(out)
        return out + zero_padded_shortcut(x, self.out_channels, self.stride)


@MODELS.register_module()
class PyramidNet(BaseBackbone):
    """PyramidNet for CIFAR (Han, Kim, Kim, CVPR 2017) with ShakeDrop.

    `Deep Pyramidal Residual Networks <https://arxiv.org/abs/1610.02915>`_.
    The CIFAR network of the paper (as in dyhan0920/PyramidNet-PyTorch and
    clovaai/CutMix-PyTorch, the CutMix and SAOL papers' backbone):

    - stem: 3x3 conv to ``stem_channels`` (16) + BN, no ReLU;
    - three stages of ``n`` blocks (``n = (depth - 2) / 9`` bottleneck,
      ``(depth - 2) / 6`` basic), strides 1, 2, 2;
    - additive widening (paper Eq. 2): block ``k`` of ``3n`` has width
      ``round(16 + k * alpha / (3n))`` (the running sum is kept in floating
      point and rounded per block), times 4 for bottlenecks;
    - blocks: :class:`PyramidBlock` (first ReLU removed, BN after the last
      conv) with the zero-padded identity shortcut;
    - a final BN + ReLU after the last stage (applied to the last stage's
      output map).

    PyramidNet-200 (``alpha=240``, bottleneck) with a GAP-FC head on 100
    classes has 26,844,952 parameters (26.8 M in the paper).

    ShakeDrop (`Yamada et al., IEEE Access 2019
    <https://arxiv.org/abs/1802.02375>`_): block ``l`` of ``L`` gets drop
    probability ``shakedrop_prob * l / L`` (the paper's linear decay rule
    ``p_l = 1 - l / L * (1 - p_L)`` for the keep probability, with
    ``1 - p_L = shakedrop_prob``; 0.5 in the paper).

    Args:
        depth (int): Network depth (200 for PyramidNet-200).
        alpha (float): Widening factor: total width added over all blocks.
            Defaults to 240.
        bottleneck (bool): Bottleneck blocks (depth = 9n + 2) or basic ones
            (depth = 6n + 2). Defaults to True.
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int): Width of the stem. Defaults to 16.
        shakedrop_prob (float): ShakeDrop probability of the last block;
            0 turns ShakeDrop off. Defaults to 0.
        out_indices (Sequence[int]): Stages (0, 1, 2) whose maps
            :meth:`forward` returns; SAOL reads several. Defaults to
            ``(2, )``.
        norm_cfg (dict): Norm layers. Defaults to ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): Initialisation. Defaults to
            He normal (fan-out) convs and unit BN, as the reference code.
    """

    def __init__(self,
                 depth: int = 200,
                 alpha: float = 240,
                 bottleneck: bool = True,
                 in_channels: int = 3,
                 stem_channels: int = 16,
                 shakedrop_prob: float = 0.0,
                 out_indices: Sequence[int] = (2, ),
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Union[dict, List[dict], None] = [
                     dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                          nonlinearity='relu'),
                     dict(type='Constant', val=1, layer='_BatchNorm'),
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        per_block = 9 if bottleneck else 6
        if not isinstance(depth, int) or depth < per_block + 2 or \
                (depth - 2) % per_block:
            raise ValueError(
                f'PyramidNet: depth must be {per_block}n + 2 for '
                f'{"bottleneck" if bottleneck else "basic"} blocks (e.g. '
                f'{per_block * 22 + 2 if bottleneck else 110}), got '
                f'{depth!r}.')
        if alpha < 0:
            raise ValueError(f'PyramidNet: alpha must be >= 0, got {alpha}.')
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in (0, 1, 2) for i in out_indices):
            raise ValueError('PyramidNet: out_indices must list stages among '
                             f'0, 1, 2 (e.g. (0, 1, 2)), got {out_indices}.')
        self.out_indices = out_indices
        self.depth = depth
        n = (depth - 2) // per_block
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, 1, 1,
                               bias=False)
        self.bn1 = build_norm_layer(norm_cfg, stem_channels)[1]
        add_rate = alpha / (3 * n)
        width = float(stem_channels)
        channels = stem_channels
        self.stage_channels: Tuple[int, ...] = ()
        for stage, stride in enumerate((1, 2, 2)):
            blocks = []
            for i in range(n):
                width += add_rate
                k = stage * n + i + 1
                blocks.append(PyramidBlock(
                    channels, int(round(width)), stride if i == 0 else 1,
                    bottleneck, shakedrop_prob * k / (3 * n), norm_cfg))
                channels = blocks[-1].out_channels
            self.add_module(f'layer{stage + 1}', nn.Sequential(*blocks))
            self.stage_channels += (channels, )
        self.bn_final = build_norm_layer(norm_cfg, channels)[1]
        self.relu_final = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.bn1(self.conv1(x))
        outs = []
        for stage in range(3):
            x = getattr(self, f'layer{stage + 1}')(x)
            if stage == 2:
                x = self.relu_final(self.bn_final(x))
            if stage in self.out_indices:
                outs.append(x)
        return tuple(outs)
