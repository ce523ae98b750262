# Fine-tune an ImageNet-pretrained ResNet-50 with SAOL on CIFAR-100: the
# backbone starts from mmpretrain's stock ResNet-50 checkpoint
# (resnet/resnet50_8xb32_in1k.py, 76.55 top-1; only its `backbone.*`
# weights are loaded, the GAP-FC head is dropped), SAOLHead on stages 2-4
# (512/1024/2048 channels) is trained from scratch. The 32x32 images are
# upsampled to 224 so that the backbone sees its pretraining scale and SAOL
# gets the 7x7 grid of ImageNet (at 32 px the last stage is 1x1 and there is
# nothing to attend over). Schedule: mmpretrain's fine-tuning schedule
# (schedules/cub_bs64.py: SGD lr 0.01 Nesterov, wd 5e-4, 5 warm-up epochs,
# cosine, 100 epochs) on 64 images per step; CutMix on half of the batches
# as in the paper's CIFAR recipe.
#   python tools/train.py configs/resnet50_saol_cifar100-ft.py
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/schedules/cub_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'

model = dict(
    type='SAOLClassifier',
    backbone=dict(
        out_indices=(1, 2, 3),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
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
    train_cfg=dict(augments=[dict(type='GeometryCutMix', alpha=1.0)],
                   probs=[0.5]),
)

# The backbone was pretrained on ImageNet-normalised RGB inputs; CIFAR-100
# images are loaded as RGB already.
data_preprocessor = dict(
    num_classes=100,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

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
