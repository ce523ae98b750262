# GAP-FC twin of saol_demo.py: same backbone, data, CutMix and schedule, with
# mmpretrain's stock GlobalAveragePooling + LinearClsHead.
#   python tools/train.py configs/gapfc_demo.py
_base_ = [
    './_base_/models/resnet18_cifar_tiny.py',
    './_base_/datasets/digits_canvas.py',
    './_base_/schedules/demo_8e.py',
    './_base_/demo_runtime.py',
]
model = dict(
    head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0,
                        use_soft=True)),
    # CutMix on half of the batches (the paper's CIFAR setting): the digits
    # are small, so area-mixed labels are noisy and CutMix on every batch
    # slows an 8-epoch run down a lot.
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)], probs=[0.5]),
)
