"""Stop training at the first NaN/inf loss, before anything is saved."""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook']

_ADVICE = (
    'Lower the learning rate (optim_wrapper.optimizer.lr) or the warm-up '
    'start, add gradient clipping (optim_wrapper.clip_grad=dict('
    'max_norm=...)), check the input data and loss weights, then resume '
    'with --resume.')


class NonFiniteLossError(RuntimeError):
    """A loss term or a weight about to be saved is NaN or infinite."""


def _scalar(value) -> Optional[float]:
    """A logged value as a float, or None if it is no number."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean()) if value.numel() \
            else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop a run as soon as its loss is NaN or infinite.

    A diverged run otherwise goes on "training" with NaN weights, logs NaN
    for hours and overwrites its good checkpoints with poisoned ones. This
    hook checks every loss term the model returns (all keys containing
    ``'loss'``, e.g. SAOL's ``loss_cls``, ``loss_gapfc``, ``loss_distill``,
    ``loss_spatial`` and ``loss_attention``, and their sum ``loss``) after
    each training iteration and raises :class:`NonFiniteLossError` naming
    the step (as the log prints it: epoch, batch and iteration) and the
    offending terms, with all terms' values.

    Its priority, ``'VERY_HIGH'``, runs it before every stock hook in
    ``after_train_iter``: before the checkpoint hook (``'VERY_LOW'``), so
    no checkpoint is written after the bad step and the last complete one
    stays untouched for ``--resume``; and before ``EMAHook``, the logger and
    the schedulers. As a second line, it refuses to save any checkpoint
    whose weights are not finite (``before_save_checkpoint``), e.g. when the
    last step of an epoch overflowed the weights while its loss was still
    finite.

    The losses are averaged over all processes before they are logged, so in
    a distributed run every process stops at the same step.

    Args:
        check_weights (bool): Also refuse to save a checkpoint with NaN/inf
            weights. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_weights: bool = True) -> None:
        self.check_weights = check_weights

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Raise :class:`NonFiniteLossError` if a loss term is not finite."""
        if not outputs:
            return
        losses: Dict[str, float] = {}
        for key, value in outputs.items():
            number = _scalar(value) if 'loss' in key else None
            if number is not None:
                losses[key] = number
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if not bad:
            return
        terms = [k for k in bad if k != 'loss'] or bad
        values = ', '.join(f'{k}={v:.4g}' for k, v in losses.items())
        raise NonFiniteLossError(
            f'Non-finite loss at {self._step(runner, batch_idx)}: '
            f'{", ".join(terms)} {"is" if len(terms) == 1 else "are"} NaN or '
            f'infinite ({values}). Training stopped before this step was '
            f'logged or saved. {self._last_checkpoint(runner)} {_ADVICE}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to save weights that are NaN or infinite."""
        if not self.check_weights:
            return
        for name, tensor in checkpoint.get('state_dict', {}).items():
            if isinstance(tensor, torch.Tensor) and \
                    tensor.is_floating_point() and \
                    not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLossError(
                    f'Refused to save a checkpoint after iteration '
                    f'{runner.iter}: the model weight {name!r} is NaN or '
                    f'infinite. {self._last_checkpoint(runner)} {_ADVICE}')

    @staticmethod
    def _step(runner, batch_idx: int) -> str:
        """The step as the training log names it."""
        iteration = runner.iter + 1
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            return f'iteration {iteration}'
        batches = len(runner.train_dataloader)
        return (f'epoch {runner.epoch + 1}, batch {batch_idx + 1}/{batches} '
                f'(iteration {iteration}; log line "Epoch(train) '
                f'[{runner.epoch + 1}][{batch_idx + 1}/{batches}]")')

    @staticmethod
    def _last_checkpoint(runner) -> str:
        """The checkpoint ``--resume`` would use, as a sentence."""
        # The checkpoint hook writes this pointer after a complete save
        # (its message-hub entry 'last_ckpt' already names the checkpoint
        # being saved).
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        last = None
        if osp.isfile(pointer):
            with open(pointer, errors='replace') as f:
                last = f.read().strip()
        if not last:
            return 'No checkpoint had been saved yet.'
        return f'The last complete checkpoint, {last}, is untouched.'
