# SAOL on ResNeXt-50 (32x4d) / ImageNet with mmpretrain's stock recipe
# (resnext/resnext50-32x4d_8xb32_in1k.py: 8 x 32 images, SGD lr 0.1,
# 100 epochs) plus CutMix on every batch: SAOLHead on stages 2-4
# (512/1024/2048 channels, 28/14/7 grids at 224 px -> 7x7 maps),
# self-supervision with self-annotated targets and self-distillation into a
# GAP-FC branch.
#   bash tools/dist_train.sh configs/resnext50-32x4d_saol_imagenet.py 8
_base_ = ['mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(512, 1024, 2048),
        channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
    ),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)),
)

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
