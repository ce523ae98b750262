"""NonFiniteLossHook: a diverged run stops at once and saves nothing bad.

Divergence is simulated by a hook that writes NaN into one weight of the
real tiny SAOL model at a chosen point of real training.
"""
import os
from pathlib import Path

import pytest
import torch
from mmengine.hooks import (
    Hook,
    LoggerHook,
    ParamSchedulerHook,
    RuntimeInfoHook,
)

from mmsaol.compat.checkpoint import safe_torch_load
from mmsaol.engine import (
    AtomicCheckpointHook,
    NonFiniteLossError,
    NonFiniteLossHook,
)
from mmsaol.engine.hooks.atomic_file import is_temp_file
from mmsaol.troubleshooting import problem


class Poison(Hook):
    """Writes NaN into ``weight`` at iteration ``at`` (0-based), either
    before that iteration runs or after it ran (``after=True``)."""

    priority = 'NORMAL'

    def __init__(self, weight: str, at: int, after: bool = False) -> None:
        self.weight, self.at, self.after = weight, at, after

    def _poison(self, runner) -> None:
        if runner.iter == self.at:
            with torch.no_grad():
                runner.model.get_parameter(self.weight).fill_(float('nan'))

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not self.after:
            self._poison(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.after:
            self._poison(runner)


def test_runs_before_the_checkpoint_hook(make_runner, tmp_path: Path) -> None:
    order = [type(h) for h in make_runner(tmp_path).hooks]
    guard = order.index(NonFiniteLossHook)
    # Only RuntimeInfoHook (it copies the outputs to the message hub)
    # comes first; the logger, the schedulers and the checkpoint hook after.
    assert order[:guard] == [RuntimeInfoHook]
    for hook in (AtomicCheckpointHook, LoggerHook, ParamSchedulerHook):
        assert guard < order.index(hook)


def test_stops_at_the_step_and_names_the_terms(make_runner,
                                               tmp_path: Path) -> None:
    # The GAP-FC branch only feeds loss_gapfc and loss_distill; iteration
    # 3 (0-based 2) is batch 1 of epoch 2.
    runner = make_runner(tmp_path, max_epochs=3,
                         hooks=[Poison('head.gapfc.weight', at=2)])
    epoch_1 = tmp_path / 'epoch_1.pth'
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith(
        'Non-finite loss at epoch 2, batch 1/2 (iteration 3; log line '
        '"Epoch(train) [2][1/2]"): loss_gapfc, loss_distill are NaN or '
        'infinite (loss=nan, loss_cls=')
    assert 'loss_spatial=' in message and 'loss_attention=' in message
    assert problem('non_finite_loss').messages[0] in message
    assert f'The last complete checkpoint, {epoch_1}, is untouched.' in message
    assert 'optim_wrapper.clip_grad' in message and '--resume' in message

    # Nothing was written after the bad step.
    assert (tmp_path / 'last_checkpoint').read_text() == str(epoch_1)
    names = os.listdir(tmp_path)
    assert 'epoch_2.pth' not in names
    assert not [n for n in names if is_temp_file(n)]
    ckpt = safe_torch_load(str(epoch_1), map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())


def test_refuses_to_save_non_finite_weights(make_runner,
                                            tmp_path: Path) -> None:
    """The last step of epoch 1 leaves a NaN weight while its loss was
    finite: the epoch's checkpoint is refused."""
    runner = make_runner(tmp_path, max_epochs=2, hooks=[
        Poison('head.spatial_cls.bias', at=1, after=True)])
    with pytest.raises(NonFiniteLossError,
                       match=r"^Refused to save a checkpoint after iteration "
                       r"2: the model weight 'head.spatial_cls.bias' is NaN "
                       r'or infinite. No checkpoint had been saved yet.'
                       ) as info:
        runner.train()
    assert problem('non_finite_loss').messages[1] in str(info.value)
    assert os.listdir(tmp_path) == [n for n in os.listdir(tmp_path)
                                    if not n.endswith('.pth')]
    assert not (tmp_path / 'last_checkpoint').exists()

