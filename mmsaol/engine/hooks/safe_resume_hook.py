"""Resume treats a checkpoint as data and continues where the run stopped."""
from __future__ import annotations

import copy
import functools
import math
import os.path as osp
from numbers import Real
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import FlexibleRunner, Runner
from mmpretrain.registry import HOOKS

from ..rng_state import capture_rng_state, restore_rng_state, train_sampler
from .checkpoint_files import checkpoint_folder, own_checkpoint

__all__ = ['ResumeError', 'SafeResumeHook', 'install_safe_resume_hook']

#: The file mmengine's ``find_latest_checkpoint`` reads in the work_dir.
POINTER = 'last_checkpoint'

#: Parameter-group entries that hold a learning rate (mmengine's schedulers
#: add ``initial_lr``; ``OneCycleLR`` also ``max_lr`` and ``min_lr``).
LR_KEYS = ('lr', 'initial_lr', 'max_lr', 'min_lr')


class ResumeError(ValueError):
    """A ``--resume`` request that cannot be carried out as asked."""


def _resuming(runner) -> bool:
    # mmengine 0.10.7 keeps the --resume request only in this private
    # attribute (Runner.load_or_resume reads it after before_run).
    return bool(getattr(runner, '_resume', False))


def _resume_source(runner) -> str:
    """The checkpoint being resumed, for messages."""
    load_from = getattr(runner, '_load_from', None)
    if load_from is not None:
        return str(load_from)
    pointer = osp.join(runner.work_dir, POINTER)
    try:
        with open(pointer) as f:
            return f.read().strip() or pointer
    except (OSError, UnicodeDecodeError):
        return pointer


def _check_pointer(runner) -> None:
    """Refuse a ``last_checkpoint`` that holds no text: mmengine's
    ``find_latest_checkpoint`` would fail with ``UnicodeDecodeError``."""
    pointer = osp.join(runner.work_dir, POINTER)
    if osp.isdir(pointer):
        raise ResumeError(
            f'--resume: {pointer} is a folder, not the file naming the last '
            'checkpoint. Move it away, or resume from a checkpoint you '
            'have with --resume PATH.')
    if not osp.isfile(pointer):
        return
    try:
        with open(pointer) as f:  # as find_latest_checkpoint reads it
            text: Optional[str] = f.read()
    except UnicodeDecodeError:
        text = None
    if text is None or '\x00' in text:
        raise ResumeError(
            f'--resume: {pointer} holds binary data, not the path of a '
            'checkpoint (the file is damaged). Resume from a checkpoint you '
            f'have with --resume PATH, or delete {pointer} to train from '
            'scratch.')


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and \
        value >= 0


def _real_buffer(buffer: Any) -> bool:
    """Whether a logged history holds real numbers (a complex or other
    value from a file would fail the loggers' JSON writes later)."""
    histories = [getattr(buffer, name, None)
                 for name in ('_log_history', '_count_history')]
    return all(isinstance(h, np.ndarray) and h.dtype.kind in 'biuf'
               for h in histories)


def sanitize_checkpoint(checkpoint: Any, runner) -> List[str]:
    """Remove from a loaded checkpoint what no run may take from it.

    In place, before mmengine's ``Runner.resume`` reads the checkpoint:

    - ``meta['config']`` and ``meta['cfg']``: Python config text.
      ``Runner.resume`` (mmengine 0.10.7) runs ``meta['config']`` through
      ``Config.fromstring``, which executes it. mmengine's own checkpoints
      store ``meta['cfg']`` instead, so that check never ran for them.
    - the message hub's ``runtime_info['cfg']``: resumed, it would replace
      this run's config text in every checkpoint saved later (mmengine's
      inferencer parses that text when no config is given).
    - ``best_ckpt*`` paths that are not a best checkpoint of this run's
      checkpoint folder (:func:`own_checkpoint`), ``best_score*`` values
      that are not numbers, and ``keep_ckpt_ids`` entries that are not step
      numbers: the checkpoint hook deletes the files they name.
    - logged scalars (``log_scalars``) that are not real numbers.

    Args:
        checkpoint: the loaded checkpoint (a dict).
        runner: the runner loading it.

    Returns:
        list[str]: a description of each untrusted entry dropped (the
        config texts are dropped silently).
    """
    dropped: List[str] = []
    if not isinstance(checkpoint, dict):
        return dropped
    meta = checkpoint.get('meta')
    if isinstance(meta, dict):
        meta.pop('config', None)
        meta.pop('cfg', None)
    hub = checkpoint.get('message_hub')
    scalars = hub.get('log_scalars') if isinstance(hub, dict) else None
    if isinstance(scalars, dict):
        for key in [k for k, v in scalars.items() if not _real_buffer(v)]:
            dropped.append(f'log_scalars[{key!r}] (not real numbers)')
            del scalars[key]
    info = hub.get('runtime_info') if isinstance(hub, dict) else None
    if not isinstance(info, dict):
        return dropped
    info.pop('cfg', None)
    hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)),
                None)
    folder = checkpoint_folder(hook, runner) if hook is not None else None

    def owned(path: Any) -> bool:
        return folder is not None and own_checkpoint(path, folder,
                                                     hook.filename_tmpl)

    resumed_keys = hub.get('resumed_keys')

    def drop(key: str, why: str) -> None:
        dropped.append(f'{key}={info.pop(key)!r} ({why})')
        if isinstance(resumed_keys, dict):
            resumed_keys.pop(key, None)

    for key in [k for k in info if isinstance(k, str)]:
        value = info[key]
        if key == 'stale_best_ckpts':
            if not (isinstance(value, list) and all(map(owned, value))):
                drop(key, f"not best checkpoints in this run's folder "
                     f'{folder}')
        elif key.startswith('best_ckpt'):
            if not (value is None or owned(value)):
                drop(key, f"not a best checkpoint in this run's folder "
                     f'{folder}')
        elif key.startswith('best_score') and not _is_number(value):
            drop(key, 'not a number')
        elif key == 'keep_ckpt_ids':
            steps = [v for v in value if _is_step(v)] \
                if isinstance(value, list) else []
            if steps != value:
                dropped.append(f'{key}={value!r} (not step numbers)')
                info[key] = steps
    return dropped


def _param_groups(optim_wrapper) -> Optional[List[dict]]:
    """The optimizer's parameter groups (one optimizer only)."""
    if isinstance(optim_wrapper, OptimWrapperDict):
        return None
    if isinstance(optim_wrapper, OptimWrapper):
        return optim_wrapper.optimizer.param_groups
    return None


def _differs(a: Any, b: Any) -> bool:
    """``a != b`` for optimizer settings (tensors compare by value)."""
    try:
        return bool(a != b)
    except (RuntimeError, TypeError, ValueError):  # a tensor of several
        return not (isinstance(a, torch.Tensor) and isinstance(
            b, torch.Tensor) and torch.equal(a, b))


def _base_lr(group: dict) -> Any:
    return group.get('initial_lr', group.get('lr'))


def _scalable(scheduler) -> bool:
    """Whether scaling a scheduler's learning-rate values scales its whole
    schedule: true for mmengine's own schedulers (their ``_get_value`` is
    linear in the group's lr, ``base_values`` and ``eta_min``)."""
    get_value = getattr(type(scheduler), '_get_value', None)
    return getattr(get_value, '__module__', '').startswith(
        'mmengine.optim.scheduler')


@HOOKS.register_module()
class SafeResumeHook(Hook):
    """Resume a run from a checkpoint as from data, where it stopped.

    What it changes in mmengine 0.10.7's ``Runner.resume`` /
    ``load_checkpoint`` (and ``FlexibleRunner``'s), for every checkpoint
    the runner loads (``--resume``, auto resume via
    ``work_dir/last_checkpoint``, ``load_from``):

    - no text from a checkpoint is executed or parsed as a config:
      :func:`sanitize_checkpoint` drops ``meta['config']`` (which
      ``Runner.resume`` would execute through ``Config.fromstring`` to read
      ``gpu_ids``), ``meta['cfg']`` and the message hub's ``cfg``, and the
      untrusted paths and numbers the checkpoint hook would act on. The
      number of processes is compared with ``meta['world_size']`` instead.
    - the random state (Python, numpy, torch, CUDA; the training sampler's
      seed) is saved in every checkpoint (``meta['rng_state']``) and
      restored on resume, after every other ``before_train`` hook, so a
      resumed run draws the numbers the uninterrupted run draws. In a
      distributed run with ``randomness.diff_rank_seed=True`` the ranks'
      states differ and only rank 0's is saved: it is not restored.
    - a learning rate the config changes is applied: when
      ``optim_wrapper.optimizer.lr`` (after ``auto_scale_lr``) differs from
      the one the checkpoint's run started with, the restored optimizer and
      learning-rate schedulers are scaled by the ratio, with a log line.
      mmengine restores the checkpoint's optimizer state and keeps its
      learning rate silently. Other optimizer settings (momentum, weight
      decay, ...) stay the checkpoint's, with a warning when the config
      differs.
    - auto resume with a ``last_checkpoint`` that holds binary data stops
      with :class:`ResumeError` (mmengine: ``UnicodeDecodeError``), and so
      does a checkpoint whose ``meta`` has no step counts.

    Importing :mod:`mmsaol` adds this hook to every runner
    (:func:`install_safe_resume_hook`); listing it in ``custom_hooks`` is
    not needed. Priority ``'LOWEST'``.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._config_groups: Optional[List[dict]] = None
        self._resumed: Optional[Dict[str, Any]] = None

    def before_run(self, runner) -> None:
        """Check the auto-resume pointer; note the config's optimizer
        settings (mmengine builds the optimizer before this hook and
        overwrites them when it resumes)."""
        if _resuming(runner) and getattr(runner, '_load_from', None) is None:
            _check_pointer(runner)
        groups = _param_groups(getattr(runner, 'optim_wrapper', None))
        self._config_groups = None if groups is None else [
            {k: copy.deepcopy(v) for k, v in g.items() if k != 'params'}
            for g in groups]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Sanitize the checkpoint before mmengine reads it; on resume,
        check its step counts and keep what :meth:`before_train` restores.
        """
        dropped = sanitize_checkpoint(checkpoint, runner)
        if not _resuming(runner):
            # Only a resumed run takes the hook state over (load_from and
            # testing read the weights): nothing to tell.
            return
        for entry in dropped:
            why = '.' if entry.startswith('log_scalars') else \
                ': no file it names is deleted.'
            runner.logger.warning(
                f'Ignoring {entry} from the loaded checkpoint{why}')
        source = _resume_source(runner)
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) \
            else None
        for key in ('epoch', 'iter'):
            value = meta.get(key) if isinstance(meta, dict) else None
            if not _is_step(value):
                raise ResumeError(
                    f'--resume: {source} is no training checkpoint of an '
                    f"mmengine runner (its meta['{key}'] is {value!r}, not "
                    'a step count). Resume from a checkpoint the training '
                    f'saved, or start from its weights with '
                    f'load_from={source}.')
        seed = meta.get('seed')
        if seed is not None and not (_is_step(seed) and seed < 2**32):
            runner.logger.warning(f"Ignoring meta['seed']={seed!r} of "
                                  f'{source}: not a seed.')
            del meta['seed']
        self._resumed = dict(source=source,
                             rng_state=meta.get('rng_state'),
                             world_size=meta.get('world_size'))

    def before_train(self, runner) -> None:
        """After a resume: restore the random state, compare the number of
        processes, apply a changed learning rate."""
        if self._resumed is None:
            return
        resumed, self._resumed = self._resumed, None
        source = resumed['source']
        self._restore_rng(runner, resumed['rng_state'], source)
        world_size = resumed['world_size']
        scale_lr = (getattr(runner, 'auto_scale_lr', None) or {}).get(
            'enable', False)
        if _is_step(world_size) and world_size != runner.world_size and \
                not scale_lr:
            runner.logger.warning(
                f'--resume: {source} was saved by a run of {world_size} '
                f'processes, this one has {runner.world_size}, so the total '
                'batch size changed but the learning rate did not. Set '
                'auto_scale_lr.enable=True to scale it, or resume with '
                f'{world_size} processes.')
        self._apply_optimizer_settings(runner, source)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the random state and the number of processes."""
        meta = checkpoint.setdefault('meta', {})
        meta['rng_state'] = capture_rng_state(train_sampler(runner))
        meta['world_size'] = runner.world_size

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _restore_rng(runner, state: Any, source: str) -> None:
        randomness = getattr(runner, '_randomness_cfg', {}) or {}
        if runner.world_size > 1 and randomness.get('diff_rank_seed'):
            runner.logger.warning(
                '--resume: the random state is not restored '
                '(randomness.diff_rank_seed=True: each process has its own '
                'and the checkpoint holds only rank 0\'s); random draws '
                'differ from an uninterrupted run from here on.')
            return
        problem = restore_rng_state(state, train_sampler(runner))
        if problem is None:
            runner.logger.info(f'--resume: random state restored from '
                               f'{source}.')
            return
        runner.logger.warning(
            f'--resume: the random state was not restored: {problem} '
            f'({source}). The run continues, but its random draws '
            '(augmentation, data order without a seed) differ from an '
            'uninterrupted run from here on.')

    def _apply_optimizer_settings(self, runner, source: str) -> None:
        """Scale the restored learning rates to the config's; warn about
        other optimizer settings that the config changes."""
        wanted, groups = self._config_groups, _param_groups(
            runner.optim_wrapper)
        if wanted is None or groups is None or len(wanted) != len(groups):
            return
        changed = sorted({
            key for want, group in zip(wanted, groups)
            for key in want.keys() & group.keys()
            if key not in LR_KEYS and not key.startswith('initial_')
            and _differs(want[key], group[key])})
        if changed:
            runner.logger.warning(
                f'--resume keeps the optimizer settings of {source} for '
                f'{", ".join(changed)} (the config sets other values): '
                'mmengine restores them with the optimizer state. To train '
                f'with new ones, start from its weights with '
                f'load_from={source}.')
        pairs = [(_base_lr(w), _base_lr(g)) for w, g in zip(wanted, groups)]
        if all(_is_number(w) and _is_number(h) and math.isclose(w, h)
               for w, h in pairs):
            return
        refuse = (
            f'--resume: the config changes the learning rate that {source} '
            f'was trained with ({[h for _, h in pairs]} -> '
            f'{[w for w, _ in pairs]} per parameter group), and ')
        fix = (' Resume with the learning rate of the checkpoint, or start '
               f'from its weights with load_from={source} (a new optimizer '
               'and schedule).')
        if not all(_is_number(w) and _is_number(h) and h > 0
                   for w, h in pairs):
            raise ResumeError(refuse + 'one of them is zero.' + fix)
        ratio = pairs[0][0] / pairs[0][1]
        if not all(math.isclose(w / h, ratio) for w, h in pairs):
            raise ResumeError(refuse + 'not by the same factor for all '
                              'groups, so the schedule cannot be scaled.' +
                              fix)
        schedulers = [s for s in (runner.param_schedulers or [])
                      if getattr(s, 'param_name', None) == 'lr']
        unknown = [type(s).__name__ for s in schedulers if not _scalable(s)]
        if unknown:
            raise ResumeError(refuse + f'{", ".join(unknown)} is no mmengine '
                              'scheduler whose schedule can be scaled.' + fix)
        for group in groups:
            for key in LR_KEYS:
                if _is_number(group.get(key)):
                    group[key] *= ratio
        for scheduler in schedulers:
            scheduler.base_values = [v * ratio for v in scheduler.base_values]
            for name in ('_last_value', 'min_values'):
                values = getattr(scheduler, name, None)
                if isinstance(values, list):
                    setattr(scheduler, name, [v * ratio for v in values])
            if _is_number(getattr(scheduler, 'eta_min', None)):
                scheduler.eta_min *= ratio
        runner.logger.warning(
            f'--resume: the config sets the learning rate to {pairs[0][0]:g}'
            f', {source} was trained with {pairs[0][1]:g}: its schedule '
            f'continues scaled by {ratio:g} (lr now {groups[0]["lr"]:g}).')


def install_safe_resume_hook() -> None:
    """Make every mmengine ``Runner`` and ``FlexibleRunner`` register
    :class:`SafeResumeHook` (unless its config lists one already).

    Shim for mmengine 0.10.7, whose ``Runner.resume`` executes
    ``meta['config']`` of the checkpoint, trusts the paths in its message
    hub, and restores no random state. Wraps ``register_hooks``, which both
    runners call once from ``__init__``. It can go when mmengine resumes
    without reading code or paths from the checkpoint (not the case up to
    0.10.7).
    """
    for cls in (Runner, FlexibleRunner):
        stock = cls.register_hooks
        if getattr(stock, '_adds_safe_resume_hook', False):
            continue

        @functools.wraps(stock)
        def register_hooks(self, default_hooks=None, custom_hooks=None,
                           _stock=stock) -> None:
            _stock(self, default_hooks, custom_hooks)
            if not any(isinstance(h, SafeResumeHook) for h in self.hooks):
                self.register_hook(SafeResumeHook())

        register_hooks._adds_safe_resume_hook = True  # type: ignore
        cls.register_hooks = register_hooks
