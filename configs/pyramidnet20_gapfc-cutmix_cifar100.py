# A small-depth variant of pyramidnet200_gapfc-cutmix_cifar100.py for quick
# runs and the tests (same recipe and data): PyramidNet-20 (two bottleneck
# blocks per stage, alpha 48, 256 output channels, 0.24 M parameters).
_base_ = ['./pyramidnet200_gapfc-cutmix_cifar100.py']

model = dict(
    backbone=dict(depth=20, alpha=48),
    head=dict(in_channels=256),
)
