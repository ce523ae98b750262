"""Training-engine extensions for mmengine 0.10.7 (see :mod:`.hooks`).

Importing this package registers the hooks in mmpretrain's ``HOOKS``
registry and the ``'atomic_local'`` file backend in mmengine's.
"""
from .hooks import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
    CheckpointMatchHook,
    CheckpointMismatchError,
    NonFiniteLossError,
    NonFiniteLossHook,
    atomic_write,
    checkpoint_problem,
)

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointMatchHook',
    'CheckpointMismatchError', 'NonFiniteLossError', 'NonFiniteLossHook',
    'atomic_write', 'checkpoint_problem'
]
