# mmpretrain's default runtime with mmsaol's reliability hooks, the demo's
# short log interval, the checkpoints it keeps and a fixed seed.
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='auto'),
)
randomness = dict(seed=0, deterministic=False)
# NaN/inf stop and checkpoint-fit check (see docs/troubleshooting.md).
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
]
