# SAOL on MobileNetV2 (1.0x) / ImageNet with mmpretrain's stock recipe
# (mobilenet_v2/mobilenet-v2_8xb32_in1k.py: 8 x 32 images, SGD lr 0.045,
# 300 epochs) plus CutMix on every batch.
# MobileNetV2's out_indices number its eight layers (0-6: inverted-residual
# groups, 7: the final 1x1 conv to 1280 channels). SAOLHead takes the last
# layer of each of the last three resolutions, the same 28/14/7 grids as
# ResNet stages 2-4 at 224 px: layer 2 (32 channels, 28x28), layer 4
# (96, 14x14) and layer 7 (1280, 7x7, the map the stock GAP-FC head pools).
# Narrow SAOL head (channels=64) to stay within the SAOL cost budget on this
# light backbone (see docs/backbones.md).
#   bash tools/dist_train.sh configs/mobilenet-v2_saol_imagenet.py 8
_base_ = ['mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(2, 4, 7)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(32, 96, 1280),
        channels=64,
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
