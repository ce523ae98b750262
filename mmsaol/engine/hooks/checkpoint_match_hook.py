"""Check that a checkpoint fits the model before mmengine loads it."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

from ...compat.checkpoint import (
    UnusableWeightsError,
    check_weights,
    loaded_from,
    state_dict_of,
)

__all__ = ['CheckpointMismatchError', 'CheckpointMatchHook']

#: How many offending tensors a message lists.
SHOWN = 5


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def _shape(tensor) -> Tuple[int, ...]:
    return tuple(getattr(tensor, 'shape', ()))


def _listing(items: List[str]) -> str:
    more = f' and {len(items) - SHOWN} more' if len(items) > SHOWN else ''
    return ', '.join(items[:SHOWN]) + more


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint that does not fit the model, say what differs.

    mmengine loads checkpoints non-strictly and only logs the keys it could
    not use: a checkpoint of another config (another backbone width, head or
    number of classes) loads "successfully" into a model that then keeps
    random weights, and ``tools/test.py`` reports chance accuracy. This hook
    compares the checkpoint's ``state_dict`` with the model's (by name, after
    mmengine's default ``module.`` prefix removal, and by shape) in
    ``after_load_checkpoint``, which mmengine calls before it copies the
    weights, and raises :class:`CheckpointMismatchError`:

    - when less than ``min_loaded`` of the model's weights (counted in
      values) would be loaded: the checkpoint is of another model;
    - when any model weight would not be loaded (missing from the
      checkpoint, or of another shape) and the run resumes (``--resume``)
      or evaluates (``tools/test.py``, ``runner.val()``); on resume also for
      checkpoint tensors the model does not have;
    - always, when an entry that fits a model tensor by name and shape
      cannot stand for it: not a tensor (a numpy array), on the meta device,
      of another dtype class (integer codes for float weights), or holding
      NaN or inf. The message names the file and the first such entry.

    When training starts from ``load_from`` (fine-tuning, where a new head
    is expected) a partial fit above ``min_loaded`` is one warning that
    lists the weights keeping their initial values.

    Args:
        min_loaded (float): Smallest share of the model's weight values that
            must come from the checkpoint. Defaults to 0.5.
        strict (bool, optional): Treat every partial fit as an error (True)
            or only as a warning (False). Defaults to None: an error when
            resuming or evaluating, a warning when fine-tuning.
    """

    def __init__(self, min_loaded: float = 0.5,
                 strict: Optional[bool] = None) -> None:
        if not 0 <= min_loaded <= 1:
            raise ValueError('CheckpointMatchHook.min_loaded must be in '
                             f'[0, 1], got {min_loaded}.')
        self.min_loaded = min_loaded
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Compare the loaded checkpoint with the model."""
        # Unwrap as mmengine's load_state_dict does (DDP-style wrappers and
        # the --tta model both keep the classifier in ``.module``).
        model = runner.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        name = loaded_from(checkpoint) or getattr(runner, '_load_from', None)
        name = None if name is None else str(name)
        try:
            source = state_dict_of(checkpoint, name)
            check_weights(source, model.state_dict(), name)
        except UnusableWeightsError as error:
            raise CheckpointMismatchError(str(error)) from None
        given: Dict[str, torch.Tensor] = {
            re.sub(r'^module\.', '', k): v for k, v in source.items()}
        # Integer buffers (BN's num_batches_tracked) carry no weights.
        wanted = {k: v for k, v in model.state_dict().items()
                  if v.is_floating_point()}
        fits = [k for k, v in wanted.items()
                if k in given and _shape(given[k]) == _shape(v)]
        shape = [f'{k}: model {_shape(v)} vs checkpoint {_shape(given[k])}'
                 for k, v in wanted.items()
                 if k in given and _shape(given[k]) != _shape(v)]
        missing = [k for k in wanted if k not in given]
        # mmengine 0.10.7 keeps the --resume request and the built loops only
        # in private attributes.
        resuming = bool(getattr(runner, '_resume', False))
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        strict = self.strict if self.strict is not None else (
            resuming or not training)
        # Keys an earlier mmsaol version saved and the module now drops
        # when loading (``OBSOLETE_STATE_KEYS``, e.g. SAOLHead's old
        # attention bias) are not keys the model lacks.
        obsolete = {f'{name}.{key}' if name else key
                    for name, module in model.named_modules()
                    for key in getattr(module, 'OBSOLETE_STATE_KEYS', ())}
        extra = [k for k in given if k not in model.state_dict()
                 and k not in obsolete] if strict else []

        problems = []
        if shape:
            problems.append(f'other shape: {_listing(shape)}')
        if missing:
            problems.append(f'not in the checkpoint: {_listing(missing)}')
        if extra:
            problems.append(f'not in the model: {_listing(extra)}')
        if not problems:
            return
        total = sum(v.numel() for v in wanted.values())
        loaded = sum(wanted[k].numel() for k in fits) / max(total, 1)
        summary = (
            f'{len(fits)} of {len(wanted)} model weights '
            f'({loaded:.1%} of the values) match the checkpoint by name and '
            f'shape; {"; ".join(problems)}.')
        fix = ('Use the config this checkpoint was trained with (it is '
               "stored in the checkpoint as meta['cfg']), or a checkpoint "
               'of this config.')
        if loaded < self.min_loaded:
            raise CheckpointMismatchError(
                f'The checkpoint does not fit this model: {summary} {fix}')
        if strict:
            what = 'resume from' if resuming else 'evaluate with'
            raise CheckpointMismatchError(
                f'The checkpoint fits the model only in part: {summary} '
                f'Refusing to {what} a partly loaded model. {fix}')
        runner.logger.warning(
            f'The checkpoint fits the model only in part: {summary} These '
            'weights keep their initial values. That is expected when '
            'fine-tuning with a new head; otherwise the checkpoint comes '
            'from another config.')
