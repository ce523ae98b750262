"""Hooks that make training runs reliable: crash-safe checkpoints, a stop at
the first non-finite loss, and a check that a loaded checkpoint fits the
model. Registered in mmpretrain's ``HOOKS`` registry."""
from .atomic_checkpoint_hook import AtomicCheckpointHook, checkpoint_problem
from .atomic_file import AtomicLocalBackend, atomic_write, is_temp_file
from .checkpoint_match_hook import CheckpointMatchHook, CheckpointMismatchError
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointMatchHook',
    'CheckpointMismatchError', 'NonFiniteLossError', 'NonFiniteLossHook',
    'atomic_write', 'checkpoint_problem', 'is_temp_file'
]
