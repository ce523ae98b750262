# PyramidNet-200 (alpha 240, bottleneck blocks, CIFAR stem) with a GAP-FC
# head on 100 classes: 26,844,952 parameters (26.8 M in the PyramidNet
# paper). ShakeDrop is off, as in the CutMix code's PyramidNet-200 runs
# that the SAOL paper compares with (16.45 / 14.23 top-1 error without /
# with CutMix); shakedrop_prob=0.5 gives the CutMix paper's ShakeDrop +
# CutMix setting (13.81).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='PyramidNet',
        depth=200,
        alpha=240,
        bottleneck=True,
        shakedrop_prob=0.0,
        out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
