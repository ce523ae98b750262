# The embedded demo data set (mmsaol.datasets.DigitsCanvas): scikit-learn's
# handwritten digits on a 40x40 cluttered canvas, generated in seconds.
# The canvases are rendered (seeded) when the data set is built and cached
# once as PNG files under data_root, so the pipelines read image files as
# for any image data set: mmpretrain's inferencer and tools (vis_cam.py...)
# take an image file of any size through the same test pipeline.
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)
dataset_type = 'DigitsCanvas'
data_root = 'data/digits_canvas'
canvas_size = 40
data_preprocessor = dict(
    num_classes=10,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=False,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # The canvases already have this size; other images are resized to it.
    dict(type='Resize', scale=(canvas_size, canvas_size)),
    # gt_bbox rides along as metainfo for localisation metrics.
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'gt_bbox')),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 canvas_size=canvas_size, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 canvas_size=canvas_size, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
