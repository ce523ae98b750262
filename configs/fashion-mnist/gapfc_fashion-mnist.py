# Fashion-MNIST, GAP-FC + CutMix: the baseline of the SAOL study.
# A narrow CIFAR-style ResNet-18 (16-wide stem, stage strides 2-2-2-1 so the
# 28x28 images give 14, 7, 4 and 4 pixel maps; SAOL reads stages 2-4 and
# works on the 4x4 grid), trained on the first 10,000 training images (a
# balanced subset: 1,000 per class, within +-6%) for 6 epochs, about
# 3-5 minutes with one CPU thread, and evaluated on the 10,000 test images.
# The data are mmpretrain's FashionMNIST on the original idx files:
#   python tools/study.py --prepare-fashion-mnist    # into data/fashion-mnist
#   python tools/train.py configs/fashion-mnist/gapfc_fashion-mnist.py
_base_ = [
    '../_base_/models/resnet18_cifar_tiny.py',
    '../_base_/demo_runtime.py',
]
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    backbone=dict(in_channels=1),
    head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0,
                        use_soft=True)),
    # CutMix on half of the batches (the paper's CIFAR setting).
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)], probs=[0.5]),
)

# ------------------------------------------------------------------- data
dataset_type = 'FashionMNIST'
data_root = 'data/fashion-mnist'
data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.02],
                         to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=28, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 download=False, indices=10000, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=0,
    persistent_workers=False,
    # mmpretrain 1.2.0's MNIST picks the file by test_mode, not by split.
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 test_mode=True, download=False, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# --------------------------------------------------------------- schedule
max_epochs = 6
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True,
                   weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, convert_to_iter_based=True),
]
# One validation at the end; the study tests the last checkpoint itself.
train_cfg = dict(by_epoch=True, max_epochs=max_epochs,
                 val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_best=None),
)
