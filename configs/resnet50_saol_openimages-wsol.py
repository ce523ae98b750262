# Weakly-supervised localisation with SAOL (Kim, Baek, Kim, CVPR 2020) on
# OpenImages30k, scored by PxAP on its masks (Choe et al., CVPR 2020): the
# recipe of resnet50_saol_cub-wsol.py (the ImageNet SAOL model fine-tuned,
# stride-1 last stage for 14x14 maps) with the 100 OpenImages classes and
# the benchmark's splits (./_base_/datasets/openimages_wsol.py): validation on
# "train-fullsup" (val), the final numbers on test.
#   python tools/train.py configs/resnet50_saol_openimages-wsol.py
#   python tools/eval_wsol.py configs/resnet50_saol_openimages-wsol.py CKPT \
#       --map attention
_base_ = ['./resnet50_saol_cub-wsol.py']

model = dict(head=dict(num_classes=100, maps_topk=100))
data_preprocessor = dict(num_classes=100)

# The benchmark's OpenImages layout (see ./_base_/datasets/openimages_wsol.py;
# the masks lie under the image root).
train_dataloader = dict(dataset=dict(
    data_root='data/OpenImages',
    metadata_root='data/wsol_metadata/OpenImages/train'))
val_dataloader = dict(dataset=dict(
    data_root='data/OpenImages',
    metadata_root='data/wsol_metadata/OpenImages/val'))
test_dataloader = dict(dataset=dict(
    data_root='data/OpenImages',
    metadata_root='data/wsol_metadata/OpenImages/test'))
