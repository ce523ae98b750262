# PyramidNet-200 (alpha 240) + GAP-FC + CutMix on CIFAR-100 with the CutMix
# code's recipe that the SAOL paper reused (clovaai/CutMix-PyTorch): batch
# 64 on one GPU, SGD lr 0.25 Nesterov momentum 0.9, wd 1e-4, 300 epochs,
# lr x0.1 at epochs 150 and 225, CutMix (beta 1) on half of the batches,
# 4-pixel padded random crop + horizontal flip, CIFAR-100 mean/std.
# Reported: 14.23 top-1 error (16.45 without CutMix). The baseline of
# pyramidnet200_saol_cifar100.py.
#   python tools/train.py configs/pyramidnet200_gapfc-cutmix_cifar100.py
_base_ = [
    '_base_/models/pyramidnet200_cifar.py',
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsaol'], allow_failed_imports=False)

model = dict(
    head=dict(loss=dict(type='CrossEntropyLoss', loss_weight=1.0,
                        use_soft=True)),
    # CutMix on half of the batches; the other half are left as they are.
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)], probs=[0.5]),
)
train_dataloader = dict(batch_size=64)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.25, momentum=0.9, nesterov=True,
                   weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[150, 225], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

# mmsaol's reliability hooks: checkpoints and last_checkpoint written
# atomically (a killed run resumes from the newest complete checkpoint), a
# stop naming the step and loss term when a loss turns NaN/inf (no poisoned
# checkpoint is written), and a clear error for a checkpoint that does not
# fit the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]
