# SAOL on Swin-T / ImageNet with mmpretrain's stock recipe
# (swin_transformer/swin-tiny_16xb64_in1k.py: 16 x 64 images, AdamW, 300
# epochs, RandAugment, label smoothing, Mixup or CutMix per batch) with
# CutMix replaced by GeometryCutMix (the location losses are exact zeros on
# the Mixup batches): SAOLHead on stages 2-4 (192/384/768 channels,
# 28/14/7 grids at 224 px -> 7x7 maps), self-supervision with self-annotated
# targets and self-distillation into a GAP-FC branch. Swin returns
# (N, C, H, W) maps; every selected stage gets its own LayerNorm (norm1,
# norm2 are new, norm3 is the stock one).
#   bash tools/dist_train.sh configs/swin-tiny_saol_imagenet.py 16
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(1, 2, 3)),
    neck=None,
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
