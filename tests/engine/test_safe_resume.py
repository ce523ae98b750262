"""Resume reads a checkpoint as data, deletes only the run's own files,
replaces best checkpoints safely, restores the random state and applies a
changed learning rate.

Real tiny training runs (see conftest.py); the crafted checkpoints are made
from the runs' own checkpoints. ``EpochScore`` scores each validation by its
epoch, so every validation writes a new best checkpoint.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.runner import FlexibleRunner
from mmpretrain.registry import METRICS

from mmsaol.compat.checkpoint import safe_torch_load
from mmsaol.engine import ResumeError, SafeResumeHook
from mmsaol.engine.hooks.atomic_file import is_temp_file
from mmsaol.troubleshooting import problem


@METRICS.register_module(force=True)
class EpochScore(BaseMetric):
    """``score``: the 0-based index of the epoch just trained (the message
    hub's ``epoch``), so that every validation is a new best."""

    default_prefix = None

    def __init__(self, topk=None) -> None:
        super().__init__()  # topk: merged in from the config's Accuracy

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results: list) -> dict:
        return dict(score=float(
            MessageHub.get_current_instance().get_info('epoch')))


class FailBestSave(Hook):
    """Crashes the run while it saves the best checkpoint of ``epoch``
    (best checkpoints are the saves without optimizer state)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'optimizer' not in checkpoint and runner.epoch == self.epoch:
            raise RuntimeError('simulated crash while saving the best')


SCORED = {
    'val_evaluator': dict(type='EpochScore'),
    'default_hooks.checkpoint.save_best': 'score',
    'default_hooks.checkpoint.rule': 'greater',
}


def best_files(work_dir: Path) -> List[str]:
    return sorted(p.name for p in work_dir.glob('best_*.pth'))


def pointer(work_dir: Path) -> str:
    return (work_dir / 'last_checkpoint').read_text()


def load(path: Path) -> dict:
    return safe_torch_load(str(path), map_location='cpu')


@pytest.fixture(scope='module')
def scored(tmp_path_factory: pytest.TempPathFactory, make_runner) -> Path:
    """A finished 2-epoch run; every validation was a new best."""
    work_dir = tmp_path_factory.mktemp('scored')
    make_runner(work_dir, max_epochs=2, **SCORED).train()
    return work_dir


def copy_run(run: Path, dst: Path) -> Path:
    """A copy of a finished run whose pointer names its own files."""
    shutil.copytree(run, dst)
    (dst / 'last_checkpoint').write_text(str(dst / 'epoch_2.pth'))
    return dst


def craft(src: Path, dst: Path, meta: dict = None, info: dict = None
          ) -> Path:
    """``src`` saved again as ``dst`` with some meta / runtime_info
    entries replaced."""
    checkpoint = load(src)
    checkpoint['meta'].update(meta or {})
    checkpoint['message_hub']['runtime_info'].update(info or {})
    torch.save(checkpoint, dst)
    return dst


# ----------------------------------------------------- code in checkpoints
@pytest.mark.parametrize('how', ['--resume PATH', 'auto resume',
                                 'load_from'])
def test_no_text_of_a_checkpoint_is_executed(scored: Path, tmp_path: Path,
                                             make_runner, how: str) -> None:
    run = copy_run(scored, tmp_path / 'run')
    markers = {key: tmp_path / key for key in ('config', 'cfg', 'hub')}
    code = {key: f"__import__('os').system('touch {path}')\n"
            for key, path in markers.items()}
    bad = craft(run / 'epoch_2.pth', run / 'epoch_2.pth',
                meta=dict(config=code['config'], cfg=code['cfg']),
                info=dict(cfg=code['hub']))
    options = dict(SCORED)
    if how == '--resume PATH':
        options.update(resume=True, load_from=str(bad))
    elif how == 'auto resume':
        options.update(resume=True)
    else:
        options.update(load_from=str(bad))
    runner = make_runner(run, max_epochs=3, **options)
    runner.train()
    assert not [m for m in markers.values() if m.exists()]
    # The checkpoints the run saves carry its own config text, not the
    # one of the checkpoint it loaded.
    saved = load(run / 'epoch_3.pth')
    assert saved['message_hub']['runtime_info']['cfg'] == \
        runner.cfg.pretty_text


def test_resume_needs_step_counts(scored: Path, tmp_path: Path,
                                  make_runner) -> None:
    bad = craft(scored / 'epoch_2.pth', tmp_path / 'bad.pth',
                meta=dict(epoch='2'))
    runner = make_runner(tmp_path / 'run', resume=True, load_from=str(bad))
    with pytest.raises(ResumeError, match=r"bad\.pth is no training "
                       r"checkpoint.*meta\['epoch'\] is '2'.*load_from="):
        runner.train()


# ------------------------------------------------------ deleting files
@pytest.mark.parametrize('hook_type', ['AtomicCheckpointHook',
                                       'CheckpointHook'])
def test_resume_deletes_nothing_outside_the_run(scored: Path, tmp_path: Path,
                                                make_runner,
                                                hook_type: str) -> None:
    run = copy_run(scored, tmp_path / 'run')
    victim = tmp_path / 'victim.txt'
    victim.write_text('precious')
    traversed = tmp_path / 'traversed.pth'
    traversed.write_text('precious')
    linked = tmp_path / 'linked.pth'
    linked.write_text('precious')
    link = run / 'best_score_epoch_1.pth'
    link.symlink_to(linked)
    # keep_ckpt_ids names 'epoch_/../../traversed.pth' through a folder
    # 'epoch_' when a step is a path.
    (run / 'epoch_').mkdir()
    cases = {'best_ckpt': str(victim), 'best_score': -1.0,
             'keep_ckpt_ids': ['/../../traversed']}
    for name, best in (('outside.pth', str(victim)), ('link.pth', str(link))):
        craft(run / 'epoch_2.pth', run / name,
              info=dict(cases, best_ckpt=best))
        options = dict(SCORED, resume=True, load_from=str(run / name))
        options['default_hooks.checkpoint.type'] = hook_type
        options['default_hooks.checkpoint.max_keep_ckpts'] = 1
        make_runner(run, max_epochs=3, **options).train()
        assert victim.read_text() == 'precious'
        assert traversed.read_text() == 'precious'
        assert linked.read_text() == 'precious'
        assert (run / 'best_score_epoch_3.pth').is_file()


def test_resuming_a_copy_keeps_the_original_best(tmp_path: Path,
                                                 make_runner) -> None:
    original = tmp_path / 'original'
    make_runner(original, max_epochs=2, **SCORED).train()
    # A plain copy: its pointer and bookkeeping name the original's files.
    copy = tmp_path / 'copy'
    shutil.copytree(original, copy)
    make_runner(copy, max_epochs=3, resume=True, **SCORED).train()
    assert best_files(original) == ['best_score_epoch_2.pth']
    # The copy keeps its copy of it (it did not write it) and its own best.
    assert best_files(copy) == ['best_score_epoch_2.pth',
                                'best_score_epoch_3.pth']


def test_resume_deletes_the_best_checkpoint_it_replaces(
        scored: Path, tmp_path: Path, make_runner) -> None:
    run = copy_run(scored, tmp_path / 'run')
    craft(run / 'epoch_2.pth', run / 'epoch_2.pth', info=dict(
        best_ckpt=str(run / 'best_score_epoch_2.pth')))
    make_runner(run, max_epochs=3, resume=True, **SCORED).train()
    assert best_files(run) == ['best_score_epoch_3.pth']
    info = load(run / 'epoch_3.pth')['message_hub']['runtime_info']
    assert info['best_ckpt'] == str(run / 'best_score_epoch_3.pth')
    assert info['best_score'] == 2.0
    # Saved before the old best was deleted, it lists it for a resume.
    assert info['stale_best_ckpts'] == [str(run / 'best_score_epoch_2.pth')]


# ------------------------------------------ replacing the best checkpoint
def test_new_best_is_complete_before_the_old_one_goes(tmp_path: Path,
                                                      make_runner) -> None:
    runner = make_runner(tmp_path, max_epochs=3, hooks=[FailBestSave(2)],
                         **SCORED)
    with pytest.raises(RuntimeError, match='simulated crash'):
        runner.train()
    # The old best is there; the crashed step's checkpoint was not written
    # (it follows its validation), so resume validates epoch 2 again.
    assert best_files(tmp_path) == ['best_score_epoch_1.pth']
    assert pointer(tmp_path) == str(tmp_path / 'epoch_1.pth')
    assert not (tmp_path / 'epoch_2.pth').exists()
    assert not [n for n in os.listdir(tmp_path) if is_temp_file(n)]

    make_runner(tmp_path, max_epochs=3, resume=True, **SCORED).train()
    assert best_files(tmp_path) == ['best_score_epoch_3.pth']
    info = load(tmp_path / 'epoch_3.pth')['message_hub']['runtime_info']
    assert info['best_score'] == 2.0


def test_resume_deletes_a_best_checkpoint_a_kill_left(
        scored: Path, tmp_path: Path, make_runner) -> None:
    """Killed after the step's checkpoint named the new best and before
    the old one was deleted: the checkpoint lists the old one as stale."""
    run = copy_run(scored, tmp_path / 'run')
    shutil.copy(run / 'best_score_epoch_2.pth', run / 'best_score_epoch_1.pth')
    outside = tmp_path / 'best_score_epoch_1.pth'
    outside.write_text('precious')
    craft(run / 'epoch_2.pth', run / 'epoch_2.pth', info=dict(
        stale_best_ckpts=[str(run / 'best_score_epoch_1.pth')]))
    craft(run / 'epoch_2.pth', run / 'outside.pth', info=dict(
        stale_best_ckpts=[str(outside)]))
    make_runner(run, max_epochs=3, resume=True, load_from=str(
        run / 'outside.pth'), **SCORED).train()
    assert outside.read_text() == 'precious'
    assert (run / 'best_score_epoch_1.pth').is_file()
    (run / 'last_checkpoint').write_text(str(run / 'epoch_2.pth'))
    make_runner(run, max_epochs=3, resume=True, **SCORED).train()
    assert not (run / 'best_score_epoch_1.pth').exists()


# ---------------------------------------------------------- random state
def final_weights(runner) -> dict:
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def assert_equal_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


class CrashBeforeEpoch(Hook):
    """Stops the run (as a kill would) when epoch ``epoch`` (0-based)
    starts, after the previous epoch's checkpoint is complete."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_train_epoch(self, runner) -> None:
        if runner.epoch == self.epoch:
            raise RuntimeError('simulated kill')


@pytest.mark.parametrize('seed', [0, None])
def test_resumed_run_ends_bit_identical(tmp_path: Path, make_runner,
                                        seed) -> None:
    """CutMix draws its boxes from numpy's global generator; without a
    seed the sampler's seed is random too."""
    killed = make_runner(tmp_path / 'a', max_epochs=2,
                         hooks=[CrashBeforeEpoch(1)],
                         randomness=dict(seed=seed))
    with pytest.raises(RuntimeError, match='simulated kill'):
        killed.train()
    resumed = make_runner(tmp_path / 'a', max_epochs=2, resume=True,
                          randomness=dict(seed=seed))
    resumed.train()
    # The uninterrupted run with the seed the killed run drew.
    whole = make_runner(tmp_path / 'b', max_epochs=2,
                        randomness=dict(seed=killed.seed))
    whole.train()
    assert_equal_weights(final_weights(resumed), final_weights(whole))


def test_old_checkpoint_without_random_state_resumes_with_a_warning(
        scored: Path, tmp_path: Path, make_runner) -> None:
    checkpoint = load(scored / 'epoch_2.pth')
    del checkpoint['meta']['rng_state']
    torch.save(checkpoint, tmp_path / 'old.pth')
    runner = make_runner(tmp_path / 'run', max_epochs=3, resume=True,
                         load_from=str(tmp_path / 'old.pth'),
                         log_level='INFO')
    runner.train()
    log = ''.join(p.read_text() for p in (tmp_path / 'run').glob('*/*.log'))
    assert 'the random state was not restored: the checkpoint holds no ' \
        'random state' in log


# --------------------------------------------------------- learning rate
def test_resume_applies_a_changed_learning_rate(scored: Path, tmp_path: Path,
                                                make_runner) -> None:
    run = copy_run(scored, tmp_path / 'run')
    # lr 0.05, x0.1 after epoch 1: 0.005 when the checkpoint was saved.
    runner = make_runner(run, max_epochs=3, resume=True, log_level='INFO',
                         **{'optim_wrapper.optimizer.lr': 0.01,
                            'optim_wrapper.optimizer.momentum': 0.5})
    runner.train()
    # As if the run had started with lr 0.01 (up to rounding of the
    # factor 0.2 applied once).
    (group, ) = runner.optim_wrapper.optimizer.param_groups
    assert math.isclose(group['lr'], 0.001, rel_tol=1e-12)
    assert math.isclose(group['initial_lr'], 0.01, rel_tol=1e-12)
    (scheduler, ) = runner.param_schedulers
    assert math.isclose(scheduler.base_values[0], 0.01, rel_tol=1e-12)
    assert group['momentum'] == 0.9  # the checkpoint's, with a warning
    log = ''.join(p.read_text() for p in run.glob('*/*.log'))
    assert 'the config sets the learning rate to 0.01, ' in log
    assert 'continues scaled by 0.2 (lr now 0.001)' in log
    assert 'keeps the optimizer settings of' in log and 'momentum' in log


def test_resume_refuses_lr_changes_it_cannot_scale(tmp_path: Path,
                                                   make_runner) -> None:
    def paramwise(head_lr_mult: float) -> dict:
        return {'optim_wrapper.paramwise_cfg': dict(
            custom_keys={'head': dict(lr_mult=head_lr_mult)})}

    make_runner(tmp_path, max_epochs=1, **paramwise(1.0)).train()
    # The head's groups at 10x: not the same factor for every group.
    runner = make_runner(tmp_path, max_epochs=2, resume=True,
                         **paramwise(10.0))
    with pytest.raises(ResumeError, match='not by the same factor.*'
                       'load_from='):
        runner.train()


# -------------------------------------------------------------- pointer
def test_binary_pointer_is_a_sentence(tmp_path: Path, make_runner) -> None:
    (tmp_path / 'last_checkpoint').write_bytes(b'\x80\x04\x95\x00binary')
    runner = make_runner(tmp_path, resume=True, **{
        'default_hooks.checkpoint.type': 'CheckpointHook'})
    with pytest.raises(ResumeError, match=r'last_checkpoint holds binary '
                       r'data.*--resume PATH.*delete') as error:
        runner.train()
    assert any(text in str(error.value)
               for text in problem('binary_last_checkpoint').messages)


def test_every_runner_gets_the_hook_once(tmp_path: Path,
                                         make_runner) -> None:
    def count(runner) -> int:
        return sum(isinstance(h, SafeResumeHook) for h in runner.hooks)

    assert count(make_runner(tmp_path / 'a')) == 1
    assert count(make_runner(tmp_path / 'b', custom_hooks=[
        dict(type='SafeResumeHook')])) == 1
    # FlexibleRunner (DeepSpeed, FSDP) has its own register_hooks.
    assert FlexibleRunner.register_hooks._adds_safe_resume_hook
