# SAOL on the embedded demo data set (mmsaol.datasets.DigitsCanvas): the
# narrow CIFAR ResNet-18 of gapfc_demo.py with the GAP-FC head replaced by
# SAOLHead on stages 2-4, CutMix with the location-specific
# self-supervision (self-annotated targets) and self-distillation into a
# GAP-FC branch.
#   python tools/train.py configs/saol_demo.py
_base_ = ['./gapfc_demo.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=10,
        in_channels=(32, 64, 128),
        channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
    ),
    train_cfg=dict(augments=[dict(type='GeometryCutMix', alpha=1.0)],
                   probs=[0.5]),
)
