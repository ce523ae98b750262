# Fashion-MNIST at a schedule that does not under-fit, GAP-FC + CutMix: the
# baseline of the converged study. gapfc_fashion-mnist.py (same narrow
# CIFAR ResNet-18, augmentation and CutMix on half of the batches) on a
# smaller training set for more epochs: the first 4,000 training images
# (about 400 per class) for 15 epochs (the same 60,000 training samples as
# the 6-epoch study), validated after every epoch on 2,000 other training
# images (50,000-51,999: the split that chooses the learning rate), tested
# on the 10,000 test images.
#   python tools/study.py --prepare-fashion-mnist    # into data/fashion-mnist
#   python tools/train.py configs/fashion-mnist/gapfc_fashion-mnist-converged.py  # noqa: E501
_base_ = ['./gapfc_fashion-mnist.py']

train_dataloader = dict(dataset=dict(indices=4000))
# mmpretrain 1.2.0's MNIST reads the training file when test_mode is False.
val_dataloader = dict(
    dataset=dict(split='train', test_mode=False,
                 indices=list(range(50000, 52000))))
test_dataloader = dict(
    batch_size=500,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type='FashionMNIST', data_root='data/fashion-mnist',
                 split='test', test_mode=True, download=False,
                 pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False),
)

max_epochs = 15
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, convert_to_iter_based=True),
]
# Validation after every epoch: the curve that shows the schedule flatten.
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_best=None))
