# Clutter canvas, GAP-FC + CutMix: the baseline of the clutter study.
# The data (mmsaol.datasets.clutter_canvas): one Fashion-MNIST garment,
# 16-32 pixels on its longer side, at a random place of a 64x64 canvas
# among 3-6 partial crops of other classes' garments; 4,000 training
# canvases, 1,000 validation canvases (other Fashion-MNIST training images,
# for choosing the learning rate) and 3,000 test canvases (Fashion-MNIST's
# test images), written in the WSOL metadata format with a box and a mask
# per canvas:
#   python -m mmsaol study --prepare clutter-canvas   # data/clutter-canvas
# A narrow ResNet-18 (16-wide 7x7 stem with max-pooling, stage strides
# 1-2-1-1: 16, 8, 8, 8-pixel maps; SAOL reads stages 2-4 on an 8x8 grid),
# 15 epochs of SGD with cosine decay, validated after every epoch (the
# validation curve of the study's records); 5-10 minutes on one CPU thread.
#   python tools/train.py configs/clutter/gapfc_clutter.py
_base_ = ['../_base_/demo_runtime.py']
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=18,
        in_channels=1,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        strides=(1, 2, 1, 1),
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True)),
    # CutMix on half of the batches, as in the Fashion-MNIST study.
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)], probs=[0.5]),
)

# ------------------------------------------------------------------- data
dataset_type = 'WSOLMetadataDataset'
data_root = 'data/clutter-canvas'
canvas_size = 64
data_preprocessor = dict(num_classes=10, mean=[25.6], std=[59.6],
                         to_rgb=False)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    # The canvases have this size already; other images are resized to it.
    dict(type='Resize', scale=(canvas_size, canvas_size)),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'gt_bbox', 'gt_mask_paths',
                    'gt_ignore_path')),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=f'{data_root}/metadata/train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
# The validation split: canvases of other Fashion-MNIST training images,
# used to choose the learning rate (the test split only for the tables).
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=f'{data_root}/metadata/val', test_mode=True,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=250,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=f'{data_root}/metadata/test', test_mode=True,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = val_evaluator

# --------------------------------------------------------------- schedule
max_epochs = 15
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True,
                   weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, convert_to_iter_based=True),
]
# Validation after every epoch: the curve that shows the schedule flatten.
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_best=None),
)
