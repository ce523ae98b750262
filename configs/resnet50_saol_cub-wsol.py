# Weakly-supervised localisation with SAOL (Kim, Baek, Kim, CVPR 2020,
# Sec. 4): fine-tune the ImageNet SAOL model (resnet50_saol_imagenet.py) on
# CUB-200-2011 with the paper's finer maps. The last ResNet stage runs at
# stride 1 (strides=(1, 2, 2, 1)): at 224 px, stages 2-4 give 28x28, 14x14
# and 14x14 maps, so A and Y are 14x14 instead of 7x7 (same weights).
# Data: the WSOL benchmark's CUB splits (./_base_/datasets/cub_wsol.py):
# validation on "train-fullsup" (val), the final numbers on test. Both report
# accuracy and WSOLMetric (the standard protocol of Choe et al., CVPR 2020:
# MaxBoxAcc, MaxBoxAccV2) of the class maps; SAOLMapsHook draws the maps of 8
# images.
#   python tools/train.py configs/resnet50_saol_cub-wsol.py
#   python tools/eval_wsol.py configs/resnet50_saol_cub-wsol.py CKPT \
#       --map attention
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    './_base_/datasets/cub_wsol.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='SAOLClassifier',
    backbone=dict(strides=(1, 2, 2, 1), out_indices=(1, 2, 3)),
    neck=None,
    head=dict(
        _delete_=True,
        type='SAOLHead',
        num_classes=200,
        in_channels=(512, 1024, 2048),
        channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True),
        self_supervision=dict(target='self'),
        distillation=dict(),
        topk=(1, 5),
        # Maps of every class, so that GT-known localisation always finds
        # the true class's map.
        with_maps=True,
        maps_topk=200,
    ),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)),
)

# The ImageNet SAOL checkpoint. Its 1000-class layers (head.spatial_cls,
# head.gapfc) do not fit 200 classes: they are skipped with a size-mismatch
# warning and keep their fresh initialisation. Without a SAOL checkpoint,
# start from mmpretrain's ImageNet ResNet-50 instead: load_from=None and
# model.backbone.init_cfg=dict(type='Pretrained', prefix='backbone',
# checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
# 'resnet50_8xb32_in1k_20210831-ea4938fc.pth').
load_from = 'work_dirs/resnet50_saol_imagenet/epoch_300.pth'

# mmpretrain's CUB recipe (SGD lr 0.01 for 64 images per step, 5 warm-up
# epochs, cosine to 100 epochs); the freshly initialised head learns 10x
# faster, as usual when fine-tuning for WSOL.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.0)}))

custom_hooks = [
    dict(type='SAOLMapsHook', num_images=8),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]

# mmsaol's reliability hooks: checkpoints and last_checkpoint written
# atomically (a killed run resumes from the newest complete checkpoint), a
# stop naming the step and loss term when a loss turns NaN/inf (no poisoned
# checkpoint is written), and a clear error for a checkpoint that does not
# fit the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
