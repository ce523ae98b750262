# SAOL on ConvNeXt-T / ImageNet with mmpretrain's stock recipe
# (convnext/convnext-tiny_32xb128_in1k.py: 32 x 128 images, AdamW, 300
# epochs, RandAugment, label smoothing, EMA, Mixup or CutMix per batch) with
# CutMix replaced by GeometryCutMix (the location losses are exact zeros on
# the Mixup batches): SAOLHead on stages 2-4 (192/384/768 channels,
# 28/14/7 grids at 224 px -> 7x7 maps), self-supervision with self-annotated
# targets and self-distillation into a GAP-FC branch.
# gap_before_final_norm=False makes ConvNeXt return (N, C, H, W) maps (the
# stock setting pools them before its final norm); every selected stage gets
# its own LayerNorm (norm1, norm2 are new, norm3 is the stock one).
# The stock model-level init_cfg (TruncNormal on every Conv2d/Linear) is
# dropped: the backbone's own init_cfg already initialises it the same way,
# and applied to the whole model it would overwrite SAOLHead's zero-initialised
# attention output conv (training would not start from uniform attention).
#   bash tools/dist_train.sh configs/convnext-tiny_saol_imagenet.py 8
_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3), gap_before_final_norm=False),
    neck=None,
    init_cfg=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(192, 384, 768),
        channels=256,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
    ),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='GeometryCutMix', alpha=1.0),
    ]),
)

# The stock recipe's EMA hook, next to mmsaol's reliability hooks (lists
# replace each other under _base_ inheritance).
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]

# mmsaol's reliability hooks: checkpoints and last_checkpoint written
# atomically (a killed run resumes from the newest complete checkpoint), a
# stop naming the step and loss term when a loss turns NaN/inf (no poisoned
# checkpoint is written), and a clear error for a checkpoint that does not
# fit the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
