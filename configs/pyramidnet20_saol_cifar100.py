# A small-depth variant of pyramidnet200_saol_cifar100.py for quick runs and
# the tests (same recipe, data, self-supervision and distillation):
# PyramidNet-20 (two bottleneck blocks per stage, alpha 48) with SAOLHead
# on its three stages (128/192/256 channels, reduced to 64).
_base_ = ['./pyramidnet200_saol_cifar100.py']

model = dict(
    backbone=dict(depth=20, alpha=48),
    head=dict(in_channels=(128, 192, 256), channels=64),
)
