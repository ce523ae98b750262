# A narrow CIFAR-style ResNet-18 (16-wide stem) for the demo. The first
# stage has stride 2 (not 1 as on CIFAR) to halve the CPU cost, and the last
# stage stride 1 so the 40x40 demo canvas gives 10x10, 5x5 and 5x5 maps at
# stages 2-4.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        strides=(2, 2, 2, 1),
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ))
