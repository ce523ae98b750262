"""Mixed precision on CPU, and quiet AMP on CUDA.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts that CUDA (or NPU/MLU/MUSA) is
available, so ``--amp`` fails on a CPU host. :class:`CPUAmpOptimWrapper`
runs the forward under ``torch.autocast('cpu', dtype=bfloat16)``; bfloat16
has float32's range, so no loss scaling is needed. Can go when mmengine
supports CPU autocast in ``AmpOptimWrapper``.

On CUDA, mmengine 0.10.7 builds its loss scaler with the deprecated
``torch.cuda.amp.GradScaler``, which warns (FutureWarning) on torch >= 2.4.
:func:`silence_mmengine_gradscaler_warning` (installed on import) silences
exactly that warning when mmengine's AMP wrapper raises it (the
replacement, ``torch.amp.GradScaler('cuda')``, behaves the same); user code
that calls the deprecated API still sees it. Can go with an mmengine release
that uses ``torch.amp.GradScaler``.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

#: Module that mmengine 0.10.7's deprecated GradScaler call is attributed to.
MMENGINE_AMP_MODULE = r'mmengine\.optim\.optimizer\.amp_optimizer_wrapper'
CPU_AMP_DTYPES = ('bfloat16', 'float16')


def silence_mmengine_gradscaler_warning() -> None:
    """Ignore the deprecated-GradScaler FutureWarning when (and only when)
    mmengine's ``AmpOptimWrapper`` raises it. Installed on import."""
    warnings.filterwarnings(
        'ignore',
        message=r'`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is '
        r'deprecated',
        category=FutureWarning,
        module=MMENGINE_AMP_MODULE)


silence_mmengine_gradscaler_warning()


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward runs under CPU autocast.

    Used for ``--amp`` (or ``optim_wrapper.type='AmpOptimWrapper'``) on a
    host without an accelerator (see :func:`adapt_to_host`). Layers that
    autocast supports (convolutions, linear layers) run in ``dtype``;
    SAOL's softmaxes and all losses stay in float32.

    Args:
        dtype (str | torch.dtype): autocast dtype, ``'bfloat16'`` (default)
            or ``'float16'``.
        **kwargs: arguments of :class:`OptimWrapper`.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        name = str(dtype).replace('torch.', '')
        if name not in CPU_AMP_DTYPES:
            raise ValueError(f'optim_wrapper.dtype must be one of '
                             f'{CPU_AMP_DTYPES} for CPU autocast, got '
                             f'{dtype!r}.')
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, name)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of :class:`OptimWrapper`, plus CPU
        autocast."""
        with super().optim_context(model), \
                torch.autocast('cpu', dtype=self.cast_dtype):
            yield
