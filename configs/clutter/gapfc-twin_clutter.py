# Clutter canvas control for self-distillation: the baseline's backbone
# with two GAP-FC heads, the second distilled from the first by the loss
# SAOL + distillation uses (TwoGAPFCHead).
#   python tools/train.py configs/clutter/gapfc-twin_clutter.py
_base_ = ['./gapfc_clutter.py']

model = dict(
    head=dict(
        _delete_=True,
        type='TwoGAPFCHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        distillation=dict(),
    ))
