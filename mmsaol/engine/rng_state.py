"""Save and restore the random number generators a training run draws from.

mmengine 0.10.7 restores the model, optimizer, schedulers, counters and the
message hub on ``--resume`` but no random state: the resumed process
re-seeds Python's ``random``, numpy's and torch's global generators from the
config seed as at the start of the run, so batch augments (CutMix's box and
ratio, ``RandomBatchAugment``'s choice, dropout, ...) draw other numbers
than the uninterrupted run would have drawn from that point on. A config
without a seed also gives the data sampler a new seed on resume, i.e. another
data order.

The state is stored as plain lists and numbers (and torch's own byte
tensors), which the safe checkpoint loader reads without allow-listing
anything.
"""
from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np
import torch

__all__ = ['capture_rng_state', 'restore_rng_state', 'train_sampler']

#: Format tag of the saved state; a different one is not restored.
VERSION = 1


def train_sampler(runner) -> Any:
    """The sampler of the training data loader, or None (found as
    mmengine's ``DistSamplerSeedHook`` finds it)."""
    try:
        loader = runner.train_dataloader
    except Exception:  # no training loop built
        return None
    sampler = getattr(loader, 'sampler', None)
    if sampler is not None and hasattr(sampler, 'set_epoch'):
        return sampler
    batch_sampler = getattr(loader, 'batch_sampler', None)
    return getattr(batch_sampler, 'sampler', None)


def capture_rng_state(sampler: Any = None) -> dict:
    """The state of Python's, numpy's and torch's global generators (CUDA:
    the current device's, if CUDA is in use) and the sampler's seed.

    Args:
        sampler: the training sampler; its ``seed`` is saved when it is an
            int (mmengine's ``DefaultSampler`` and ``InfiniteSampler``).

    Returns:
        dict: plain data for a checkpoint's ``meta['rng_state']``.
    """
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(
        legacy=True)
    seed = getattr(sampler, 'seed', None)
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return dict(
        version=VERSION,
        python=[int(version), [int(v) for v in internal], gauss_next],
        numpy=dict(keys=[int(v) for v in keys], pos=int(pos),
                   has_gauss=int(has_gauss),
                   cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state(),
        cuda=cuda,
        sampler_seed=seed if isinstance(seed, int) else None)


def _is_int_list(value: Any, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def restore_rng_state(state: Any, sampler: Any = None) -> Optional[str]:
    """Set the generators (and the sampler's seed) to a saved state.

    Nothing is changed unless the whole state is well-formed.

    Args:
        state: what :func:`capture_rng_state` returned (from a checkpoint:
            checked before use).
        sampler: the training sampler, whose ``seed`` is set.

    Returns:
        str | None: why the state was not restored, or None.
    """
    if not isinstance(state, dict) or state.get('version') != VERSION:
        return 'the checkpoint holds no random state of this format'
    python, numpy_state = state.get('python'), state.get('numpy')
    torch_state, cuda = state.get('torch'), state.get('cuda')
    if not (isinstance(python, list) and len(python) == 3
            and isinstance(python[0], int) and _is_int_list(python[1], 625)
            and (python[2] is None or isinstance(python[2], float))):
        return "its Python 'random' state is malformed"
    if not (isinstance(numpy_state, dict)
            and _is_int_list(numpy_state.get('keys'), 624)
            and all(0 <= v < 2**32 for v in numpy_state['keys'])
            and isinstance(numpy_state.get('pos'), int)
            and isinstance(numpy_state.get('has_gauss'), int)
            and isinstance(numpy_state.get('cached_gaussian'), float)):
        return 'its numpy state is malformed'
    if not (isinstance(torch_state, torch.Tensor)
            and torch_state.dtype == torch.uint8 and torch_state.dim() == 1):
        return 'its torch state is malformed'
    if cuda is not None and not (isinstance(cuda, torch.Tensor)
                                 and cuda.dtype == torch.uint8):
        return 'its CUDA state is malformed'
    seed = state.get('sampler_seed')
    if seed is not None and (not isinstance(seed, int)
                             or isinstance(seed, bool)):
        return 'its sampler seed is not an int'
    try:
        random.setstate((python[0], tuple(python[1]), python[2]))
        np.random.set_state(
            ('MT19937', np.array(numpy_state['keys'], dtype=np.uint32),
             numpy_state['pos'], numpy_state['has_gauss'],
             numpy_state['cached_gaussian']))
        torch.set_rng_state(torch_state.cpu())
    except (ValueError, TypeError, RuntimeError) as error:
        return f'it was refused ({error})'
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda.cpu())
    if seed is not None and isinstance(getattr(sampler, 'seed', None), int):
        sampler.seed = seed
    return None
