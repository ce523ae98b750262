# Fashion-MNIST at a schedule that does not under-fit, the two-head control:
# gapfc_fashion-mnist-converged.py with two GAP-FC heads, the second
# distilled from the first (TwoGAPFCHead, as gapfc-twin_fashion-mnist.py).
#   python tools/train.py configs/fashion-mnist/gapfc-twin_fashion-mnist-converged.py  # noqa: E501
_base_ = ['./gapfc_fashion-mnist-converged.py']

model = dict(
    head=dict(
        _delete_=True,
        type='TwoGAPFCHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        distillation=dict(),
    ))
