# Fashion-MNIST at a schedule that does not under-fit, SAOL + S +
# distillation: gapfc_fashion-mnist-converged.py with the head of
# saol_fashion-mnist.py (SAOLHead on stages 2-4).
#   python tools/train.py configs/fashion-mnist/saol_fashion-mnist-converged.py
_base_ = ['./gapfc_fashion-mnist-converged.py']

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
