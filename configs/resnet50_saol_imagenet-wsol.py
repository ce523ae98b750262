# Localisation of the ImageNet SAOL model (resnet50_saol_imagenet.py; Kim,
# Baek, Kim, CVPR 2020) on the WSOL benchmark's ImageNet splits, by the
# standard protocol (Choe et al., CVPR 2020: MaxBoxAcc, MaxBoxAccV2):
# validation on "train-fullsup" (val, ImageNetV2), the final numbers on test
# (the ImageNet validation set with boxes). Training is that of
# resnet50_saol_imagenet.py (the same train split); the head attaches its
# maps for every class so that the true class always has one.
#   python tools/eval_wsol.py configs/resnet50_saol_imagenet-wsol.py CKPT \
#       --map attention
_base_ = ['./resnet50_saol_imagenet.py']

model = dict(head=dict(with_maps=True, maps_topk=1000))

# The benchmark's splits and the protocol's test pipeline (the data set of
# ./_base_/datasets/imagenet_wsol.py; mmengine does not merge a second data
# base into one that already defines the loaders).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224)),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'image_id', 'gt_bbox', 'gt_mask_paths',
                    'gt_ignore_path')),
]
val_dataloader = dict(dataset=dict(
    _delete_=True, type='WSOLMetadataDataset', data_root='data/ILSVRC',
    metadata_root='data/wsol_metadata/ILSVRC/val', test_mode=True,
    pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(
    _delete_=True, type='WSOLMetadataDataset', data_root='data/ILSVRC',
    metadata_root='data/wsol_metadata/ILSVRC/test', test_mode=True,
    pipeline=test_pipeline))
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='WSOLMetric', map='class'),
]
test_evaluator = val_evaluator
