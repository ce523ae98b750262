# Clutter canvas, SAOL + CutMix + self-supervision (self-annotated, S) +
# self-distillation into a GAP-FC branch: gapfc_clutter.py with the GAP-FC
# head replaced by SAOLHead on stages 2-4 (three 8x8 maps). Every other
# setting (data, schedule, CutMix) is the baseline's.
#   python tools/train.py configs/clutter/saol_clutter.py
_base_ = ['./gapfc_clutter.py']

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
