# Baseline of resnet50_saol_imagenet.py: ResNet-50 + GAP-FC + CutMix with the
# CutMix paper's ImageNet recipe (8 GPUs x 32 = 256 images per step, SGD
# lr 0.1 Nesterov, wd 1e-4, 300 epochs, lr x0.1 every 75 epochs, CutMix
# beta 1.0 on every batch). Reported: 21.40 top-1 error.
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0,
                        use_soft=True)),
    train_cfg=dict(augments=dict(type='CutMix', alpha=1.0)),
)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True,
                   weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[75, 150, 225], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
# 8 x 32 per step; --auto-scale-lr rescales lr for another total batch.
auto_scale_lr = dict(base_batch_size=256)
