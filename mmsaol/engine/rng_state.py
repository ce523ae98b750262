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

__all__ = ['capture_rng_state', 'restore_rng_state', 'rng_state_problem',
           'train_sampler']

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


def _is_int(value: Any, low: int, high: int) -> bool:
    """An int (not a bool) in ``[low, high)``."""
    return isinstance(value, int) and not isinstance(value, bool) and \
        low <= value < high


def _is_words(value: Any, length: int) -> bool:
    """A list of ``length`` 32-bit unsigned words."""
    return isinstance(value, list) and len(value) == length and all(
        _is_int(v, 0, 2**32) for v in value)


def _torch_state_size() -> int:
    """Bytes of the CPU generator's state (``torch.get_rng_state()``)."""
    return torch.get_rng_state().numel()


def rng_state_problem(state: Any) -> Optional[str]:
    """Why a saved random state cannot be restored, or None.

    Every part is checked completely (types, ranges, lengths) before any
    generator is changed: a state from a file is untrusted, and numpy hands
    an out-of-range ``pos`` to C code (a crash), Python's ``random`` raises
    ``OverflowError`` on words outside 32 bits.

    Args:
        state: What :func:`capture_rng_state` returned, from a checkpoint.

    Returns:
        str | None: which field is malformed, or None.
    """
    if not isinstance(state, dict) or state.get('version') != VERSION:
        return 'the checkpoint holds no random state of this format'
    python, numpy_state = state.get('python'), state.get('numpy')
    torch_state, cuda = state.get('torch'), state.get('cuda')
    # Python's random (version 3): 624 words of the Mersenne Twister and
    # its position 0..624, then the cached Gaussian or None.
    if not (isinstance(python, list) and len(python) == 3
            and type(python[0]) is int and python[0] == 3
            and _is_words(python[1], 625)
            and _is_int(python[1][-1], 0, 625)
            and (python[2] is None or type(python[2]) is float)):
        return ("its Python 'random' state (meta['rng_state']['python']) "
                'is malformed')
    if not (isinstance(numpy_state, dict)
            and set(numpy_state) == {'keys', 'pos', 'has_gauss',
                                     'cached_gaussian'}
            and _is_words(numpy_state['keys'], 624)
            and _is_int(numpy_state['pos'], 0, 625)
            and _is_int(numpy_state['has_gauss'], 0, 2)
            and type(numpy_state['cached_gaussian']) is float):
        return ("its numpy state (meta['rng_state']['numpy']) is "
                'malformed')
    if not (isinstance(torch_state, torch.Tensor)
            and torch_state.layout == torch.strided
            and torch_state.dtype == torch.uint8 and torch_state.dim() == 1
            and torch_state.numel() == _torch_state_size()):
        return ("its torch state (meta['rng_state']['torch']) is "
                'malformed')
    if cuda is not None and not (isinstance(cuda, torch.Tensor)
                                 and cuda.layout == torch.strided
                                 and cuda.dtype == torch.uint8
                                 and cuda.dim() == 1):
        return "its CUDA state (meta['rng_state']['cuda']) is malformed"
    seed = state.get('sampler_seed')
    if seed is not None and not _is_int(seed, 0, 2**63):
        return ("its sampler seed (meta['rng_state']['sampler_seed']) is "
                'not a seed')
    return None


def restore_rng_state(state: Any, sampler: Any = None) -> Optional[str]:
    """Set the generators (and the sampler's seed) to a saved state.

    Nothing is changed unless the whole state is well-formed
    (:func:`rng_state_problem`); the generators are restored together or
    not at all.

    Args:
        state: what :func:`capture_rng_state` returned (from a checkpoint:
            checked before use).
        sampler: the training sampler, whose ``seed`` is set.

    Returns:
        str | None: why the state was not restored, or None.
    """
    problem = rng_state_problem(state)
    if problem is not None:
        return problem
    python, numpy_state = state['python'], state['numpy']
    cuda = state.get('cuda')
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        random.setstate((python[0], tuple(python[1]), python[2]))
        np.random.set_state(
            ('MT19937', np.array(numpy_state['keys'], dtype=np.uint32),
             numpy_state['pos'], numpy_state['has_gauss'],
             numpy_state['cached_gaussian']))
        torch.set_rng_state(state['torch'].cpu())
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda.cpu())
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
        return f'it was refused ({error})'
    seed = state.get('sampler_seed')
    if seed is not None and isinstance(getattr(sampler, 'seed', None), int):
        sampler.seed = seed
    return None
