# SAOL on MobileNetV3-Large / ImageNet with mmpretrain's stock recipe
# (mobilenet_v3/mobilenet-v3-large_8xb128_in1k.py: 8 x 128 images,
# RMSprop, AutoAugment + RandomErasing, 600 epochs) plus CutMix on every
# batch.
# MobileNetV3's out_indices number its 17 layers (0: stem, 1-15: blocks,
# 16: the final 1x1 conv to 960 channels). SAOLHead takes the last layer of
# each of the last three resolutions, the same 28/14/7 grids as ResNet
# stages 2-4 at 224 px: layer 6 (40 channels, 28x28), layer 12 (112,
# 14x14) and layer 16 (960, 7x7, the map the stock head pools).
# The stock head (GAP -> 1280 hidden, HSwish, dropout 0.2 -> classes) is
# replaced by SAOL; its dropout rate is kept as SAOL's (channel-wise) dropout
# on the fused map before the spatial classifier, and the GAP-FC
# distillation branch is a single linear layer. Narrow SAOL head
# (channels=64, see docs/backbones.md for the cost).
#   bash tools/dist_train.sh configs/mobilenet-v3-large_saol_imagenet.py 8
_base_ = ['mmpretrain::mobilenet_v3/mobilenet-v3-large_8xb128_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(6, 12, 16)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(40, 112, 960),
        channels=64,
        dropout=0.2,
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
