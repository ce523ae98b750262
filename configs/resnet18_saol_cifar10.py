# SAOL on mmpretrain's CIFAR ResNet-18 / CIFAR-10 (32x32 inputs; stages 2-4
# give 16/8/4 grids -> 4x4 maps), with mmpretrain's CIFAR-10 schedule
# (batch 128, 200 epochs), CutMix + self-supervision + self-distillation.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=10,
        in_channels=(128, 256, 512),
        channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
    ),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)),
)
train_dataloader = dict(batch_size=128)

# mmsaol's reliability hooks: checkpoints and last_checkpoint written
# atomically (a killed run resumes from the newest complete checkpoint), a
# stop naming the step and loss term when a loss turns NaN/inf (no poisoned
# checkpoint is written), and a clear error for a checkpoint that does not
# fit the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]
