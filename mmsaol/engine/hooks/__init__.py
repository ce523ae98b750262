"""Hooks that make training runs reliable: crash-safe checkpoints, a stop at
the first non-finite loss, a check that a loaded checkpoint fits the model,
and a resume that reads checkpoints as data and restores the random state.
Registered in mmpretrain's ``HOOKS`` registry."""
from .atomic_checkpoint_hook import AtomicCheckpointHook, checkpoint_problem
from .atomic_file import (
    AtomicLocalBackend,
    atomic_path,
    atomic_write,
    is_temp_file,
)
from .checkpoint_match_hook import CheckpointMatchHook, CheckpointMismatchError
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .safe_resume_hook import (
    ResumeError,
    SafeResumeHook,
    install_safe_resume_hook,
)

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointMatchHook',
    'CheckpointMismatchError', 'NonFiniteLossError', 'NonFiniteLossHook',
    'ResumeError', 'SafeResumeHook', 'atomic_path', 'atomic_write',
    'checkpoint_problem', 'install_safe_resume_hook', 'is_temp_file'
]
