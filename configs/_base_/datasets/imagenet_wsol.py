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

# Loaders, pipelines and evaluator as in ./cub_wsol.py; only the data's
# place, the class count and the training crop differ (a value named in a base
# file is resolved there, so the loaders name the new roots again).
_base_ = ['./cub_wsol.py']

data_root = 'data/ILSVRC'
metadata_root = 'data/wsol_metadata/ILSVRC'
data_preprocessor = dict(num_classes=1000)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/val'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/test'))
