"""Training-engine extensions for mmengine 0.10.7 (see :mod:`.hooks`).

Importing this package registers the hooks in mmpretrain's ``HOOKS``
registry and the ``'atomic_local'`` file backend in mmengine's, and makes
every mmengine runner register :class:`SafeResumeHook`
(:func:`install_safe_resume_hook`).
"""
from .hooks import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
    CheckpointMatchHook,
    CheckpointMismatchError,
    NonFiniteLossError,
    NonFiniteLossHook,
    ResumeError,
    SafeResumeHook,
    atomic_path,
    atomic_write,
    checkpoint_problem,
    install_safe_resume_hook,
)
from .work_dir import WorkDirError, work_dir_error

install_safe_resume_hook()

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointMatchHook',
    'CheckpointMismatchError', 'NonFiniteLossError', 'NonFiniteLossHook',
    'ResumeError', 'SafeResumeHook', 'WorkDirError', 'atomic_path',
    'atomic_write', 'checkpoint_problem', 'install_safe_resume_hook',
    'work_dir_error'
]
