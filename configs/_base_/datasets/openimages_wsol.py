# OpenImages30k for weakly-supervised localisation with masks (PxAP), in the
# WSOL benchmark's metadata format (Choe et al., CVPR 2020;
# mmsaol.datasets.WSOLMetadataDataset) with its standard splits: train
# (29,819 images, weak labels), val (= "train-fullsup": 2,500 images with
# masks, for choosing hyper-parameters) and test (5,000 images with masks),
# 100 classes. Testing resizes the whole image to 224x224 (the protocol's
# evaluation frame, no crop); WSOLMetric reads the instance and ignore masks
# (metainfo gt_mask_paths, gt_ignore_path) and reports PxAP.
# Layout: images and masks under data/OpenImages/ as the metadata names them
# (train/..., val/..., test/...; the masks next to their images in the
# benchmark's download) and metadata/OpenImages/{train,val,test}/ under
# data/wsol_metadata/OpenImages/.

# Loaders, pipelines and evaluator as in ./cub_wsol.py; only the data's
# place and the class count differ, and WSOLMetric reports PxAP from the
# masks (a value named in a base file is resolved there, so the loaders
# name the new roots again).
_base_ = ['./cub_wsol.py']

data_root = 'data/OpenImages'
metadata_root = 'data/wsol_metadata/OpenImages'
data_preprocessor = dict(num_classes=100)

train_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/train'))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/val'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, metadata_root=metadata_root + '/test'))
