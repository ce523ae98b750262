# ImageNet (ILSVRC 2012) for weakly-supervised localisation, in the WSOL
# benchmark's metadata format (Choe et al., CVPR 2020;
# mmsaol.datasets.WSOLMetadataDataset) with its standard splits: train (the
# ImageNet training set, weak labels), val (= "train-fullsup": 10,000
# ImageNetV2 images with boxes, for choosing hyper-parameters) and test
# (50,000 images: the ImageNet validation set with its boxes). Testing
# resizes the whole image to 224x224 (the protocol's evaluation frame, no
# crop); WSOLMetric scales the boxes (original pixels) to it.
# Layout: the images under data/ILSVRC/ as the metadata's ids name them
# (train/<wnid>/..., val/ILSVRC2012_val_...JPEG, val2/...) and the
# benchmark's metadata/ILSVRC/{train,val,test}/ under
# data/wsol_metadata/ILSVRC/.
dataset_type = 'WSOLMetadataDataset'
data_root = 'data/ILSVRC'
metadata_root = 'data/wsol_metadata/ILSVRC'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224)),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'image_id', 'gt_bbox', 'gt_mask_paths',
                    'gt_ignore_path')),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=metadata_root + '/train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=metadata_root + '/val', test_mode=True,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root=data_root,
                 metadata_root=metadata_root + '/test', test_mode=True,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# WSOLMetric (the standard protocol: MaxBoxAcc, MaxBoxAccV2) reads the class
# maps the head attaches (model.head.with_maps and maps_topk = the number of
# classes, set by the model config).
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='WSOLMetric', map='class'),
]
test_evaluator = val_evaluator
