"""Fixes for the upstream stack (mmengine 0.10.7 / mmpretrain 1.2.0 on
current torch). Each shim says which upstream version it is for."""
from .amp import CPUAmpOptimWrapper
from .checkpoint import (
                         CorruptCheckpointError,
                         UnsafeCheckpointError,
                         install_safe_checkpoint_loader,
                         safe_torch_load,
)

__all__ = ['CPUAmpOptimWrapper', 'CorruptCheckpointError',
           'UnsafeCheckpointError', 'install_safe_checkpoint_loader',
           'safe_torch_load']
