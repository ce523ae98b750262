# CUB-200-2011 for weakly-supervised localisation, in the WSOL benchmark's
# metadata format (Choe et al., CVPR 2020; mmsaol.datasets.WSOLMetadataDataset)
# with its standard splits: train (weak labels, 5,994 images), val
# (= "train-fullsup": 1,000 images, 5 per class, for choosing
# hyper-parameters) and test (5,794 images). Training resizes to 256x256 and
# takes random 224 crops with flips; testing resizes the whole image to
# 224x224 (the protocol's evaluation frame, no crop); the boxes stay in
# original pixels (metainfo gt_bbox) and WSOLMetric scales them to the frame.
# Layout: the images under data/CUB_200_2011/images/<class folder>/ and the
# benchmark's metadata/CUB/{train,val,test}/ under data/wsol_metadata/CUB/.
# For CUB's own files instead (images.txt, bounding_boxes.txt...), use
# dataset type CUBWithBoxes (split 'train' or 'test').
dataset_type = 'WSOLMetadataDataset'
data_root = 'data/CUB_200_2011/images'
metadata_root = 'data/wsol_metadata/CUB'
data_preprocessor = dict(
    num_classes=200,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256)),
    dict(type='RandomCrop', crop_size=224),
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
