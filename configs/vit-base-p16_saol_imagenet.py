# SAOL on ViT-B/16 / ImageNet with mmpretrain's stock recipe
# (vision_transformer/vit-base-p16_64xb64_in1k.py: 64 x 64 images, AdamW,
# 300 epochs, AutoAugment, label smoothing, Mixup alpha 0.2) plus CutMix:
# every batch gets Mixup or GeometryCutMix with equal probability (the
# location losses are exact zeros on the Mixup batches).
# ViT has no stages: SAOLHead takes the patch tokens of the last three
# transformer layers (out_indices 9, 10, 11), each a 14x14 map with 768
# channels at 224 px. out_type='featmap' reshapes the patch tokens of a layer
# into an (N, C, H, W) map and drops the class token from it: the class
# token still takes part in every layer's self-attention, but neither SAOL
# branch nor the GAP-FC distillation branch (GAP over the patch tokens)
# reads it. The final LayerNorm only acts on the last layer's tokens; the
# head's 1x1 conv + BN normalises layers 9 and 10.
# The stock head (class token -> 3072 hidden, tanh -> classes) is replaced.
#   bash tools/dist_train.sh configs/vit-base-p16_saol_imagenet.py 8
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(out_indices=(9, 10, 11), out_type='featmap'),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=1000,
        in_channels=(768, 768, 768),
        channels=256,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1,
            mode='classy_vision'),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
    ),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.2),
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
