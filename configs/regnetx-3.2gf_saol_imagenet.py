# SAOL on RegNetX-3.2GF / ImageNet with mmpretrain's stock recipe
# (regnet/regnetx-3.2gf_8xb64_in1k.py: 8 x 64 images, SGD lr 0.4 with
# warm-up and cosine decay, 100 epochs, BGR inputs) plus CutMix on every
# batch: SAOLHead on stages 2-4 (192/432/1008 channels, 28/14/7 grids at
# 224 px -> 7x7 maps), self-supervision with self-annotated targets and
# self-distillation into a GAP-FC branch. channels=192 keeps the SAOL head
# within the SAOL cost budget (256 would add 5.0% parameters, see
# docs/backbones.md).
#   bash tools/dist_train.sh configs/regnetx-3.2gf_saol_imagenet.py 8
_base_ = ['mmpretrain::regnet/regnetx-3.2gf_8xb64_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(192, 432, 1008),
        channels=192,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
    ),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)),
)

# The stock recipe's precise-BN hook, next to mmsaol's reliability hooks
# (lists replace each other under _base_ inheritance).
custom_hooks = [
    dict(type='PreciseBNHook', num_samples=8192, interval=1,
         priority='ABOVE_NORMAL'),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]

# mmsaol's reliability hooks: checkpoints and last_checkpoint written
# atomically (a killed run resumes from the newest complete checkpoint), a
# stop naming the step and loss term when a loss turns NaN/inf (no poisoned
# checkpoint is written), and a clear error for a checkpoint that does not
# fit the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
