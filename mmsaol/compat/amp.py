"""Mixed precision on CPU.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts that CUDA (or NPU/MLU) is
available, so ``--amp`` fails on a CPU host. This wrapper runs the forward
under ``torch.autocast('cpu', dtype=bfloat16)``; bfloat16 has float32's
range, so no loss scaling is needed. Can go when mmengine supports CPU
autocast in ``AmpOptimWrapper``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward runs under CPU autocast.

    Args:
        dtype (str): autocast dtype, ``'bfloat16'`` (default) or
            ``'float16'``.
        **kwargs: arguments of :class:`OptimWrapper`.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError("optim_wrapper.dtype must be 'bfloat16' or "
                             f"'float16', got {dtype!r}.")
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), \
                torch.autocast('cpu', dtype=self.cast_dtype):
            yield
