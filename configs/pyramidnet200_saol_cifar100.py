# SAOL on PyramidNet-200 (alpha 240) / CIFAR-100, the paper's CIFAR setting:
# the recipe of pyramidnet200_gapfc-cutmix_cifar100.py (batch 64, SGD lr
# 0.25 Nesterov, wd 1e-4, 300 epochs, lr x0.1 at 150 and 225, CutMix on
# half of the batches) with SAOLHead on the three stages (32x32, 16x16 and
# 8x8 maps, 384/704/1024 channels; the 8x8 grid is the output grid), the
# location-specific self-supervision (self-annotated targets) and the
# self-distillation into a GAP-FC branch. The head adds 2.5% parameters
# and 1.1% MACs to the GAP-FC model (tests/models/test_pyramidnet.py).
#   python tools/train.py configs/pyramidnet200_saol_cifar100.py
_base_ = ['./pyramidnet200_gapfc-cutmix_cifar100.py']

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(0, 1, 2)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=100,
        in_channels=(384, 704, 1024),
        channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
    ),
    # CutMix on half of the batches; the other half are left as they are
    # (the location losses are then exact zeros).
    train_cfg=dict(augments=[dict(type='GeometryCutMix', alpha=1.0)],
                   probs=[0.5]),
)
