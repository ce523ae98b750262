# SAOL on mmpretrain's CIFAR ResNet-50 / CIFAR-100 with the paper's CIFAR
# recipe (from the CutMix code it modified: batch 64, lr 0.25, 300 epochs,
# lr x0.1 at 150 and 225, CutMix with probability 0.5). The paper used
# PyramidNet-200, which mmpretrain does not ship.
_base_ = [
    'mmpretrain::_base_/models/resnet50_cifar.py',
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
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
        num_classes=100,
        in_channels=(512, 1024, 2048),
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
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.25, momentum=0.9, nesterov=True,
                   weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[150, 225], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

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
