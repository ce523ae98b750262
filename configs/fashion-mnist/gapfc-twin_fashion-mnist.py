# Fashion-MNIST control for self-distillation: the baseline's backbone with
# two GAP-FC heads, the second distilled from the first by the same loss
# that SAOL + distillation uses (TwoGAPFCHead). A gain of SAOL +
# distillation over this is SAOL's; one shared with it comes from training
# two heads.
#   python tools/train.py configs/fashion-mnist/gapfc-twin_fashion-mnist.py
_base_ = ['./gapfc_fashion-mnist.py']

model = dict(
    head=dict(
        _delete_=True,
        type='TwoGAPFCHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        distillation=dict(),
    ))
