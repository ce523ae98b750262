# CUB-200-2011 with its bird boxes (mmsaol.datasets.CUBWithBoxes) for
# weakly-supervised localisation, with the usual WSOL pipelines: training
# resizes to 256x256 and takes random 224 crops with flips; testing only
# resizes to 224x224 (no crop), so the maps cover the whole image and the
# boxes (original image pixels, packed as metainfo gt_bbox) stay valid.
# Expected layout: data/CUB_200_2011/{images/,images.txt,
# image_class_labels.txt,train_test_split.txt,bounding_boxes.txt,classes.txt}
dataset_type = 'CUBWithBoxes'
data_root = 'data/CUB_200_2011'
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
                    'gt_bbox')),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# WSOLMetric reads the class maps the head attaches (model.head.with_maps
# and maps_topk = the number of classes, set by the model config).
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='WSOLMetric', map='class'),
]
test_dataloader = val_dataloader
test_evaluator = val_evaluator
