# SAOL on ResNet-50 / ImageNet (Kim, Baek, Kim, CVPR 2020) with the CutMix
# recipe of resnet50_gapfc-cutmix_imagenet.py: SAOLHead on stages 2-4
# (512/1024/2048 channels, 28/14/7 grids -> 7x7 maps), CutMix with the
# location-specific self-supervision (self-annotated targets, mode 'self')
# and self-distillation into a GAP-FC branch.
#   python tools/train.py configs/resnet50_saol_imagenet.py
#   bash tools/dist_train.sh configs/resnet50_saol_imagenet.py 8
_base_ = ['./resnet50_gapfc-cutmix_imagenet.py']
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
