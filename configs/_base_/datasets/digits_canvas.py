# The embedded demo data set (mmsaol.datasets.DigitsCanvas): scikit-learn's
# handwritten digits on a 40x40 cluttered canvas, generated in seconds.
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)
dataset_type = 'DigitsCanvas'
data_preprocessor = dict(
    num_classes=10,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=False,
)

# gt_bbox rides along as metainfo for localisation metrics.
pack = dict(type='PackInputs',
            meta_keys=('sample_idx', 'ori_shape', 'img_shape', 'gt_bbox'))
train_pipeline = [pack]
test_pipeline = [pack]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
