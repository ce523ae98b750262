"""AtomicCheckpointHook: atomic saves, save-then-prune, auto-resume repair.

Real tiny training runs (see conftest.py); a kill at random moments of the
demo training is tests/tools/test_kill_resume.py.
"""
import os
import shutil
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

from mmsaol.compat.checkpoint import safe_torch_load
from mmsaol.engine import AtomicCheckpointHook, checkpoint_problem
from mmsaol.engine.hooks.atomic_file import is_temp_file


def pointer(work_dir: Path) -> str:
    return (work_dir / 'last_checkpoint').read_text()


class FailSecondSave(Hook):
    """Crashes the run while it saves its second checkpoint."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.saves = 0

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.saves += 1
        if self.saves == 2:
            raise RuntimeError('simulated crash while saving')


class RecordStart(Hook):
    """Remembers where training started (after any resume)."""

    def before_train(self, runner) -> None:
        self.start = (runner.epoch, runner.iter)


@pytest.fixture(scope='module')
def trained(tmp_path_factory: pytest.TempPathFactory, make_runner) -> Path:
    """A finished 2-epoch run that kept every checkpoint."""
    work_dir = tmp_path_factory.mktemp('trained')
    make_runner(work_dir, max_epochs=2).train()
    return work_dir


def resume(make_runner, run: Path, max_epochs: int = 3):
    """Resume ``run`` automatically (--resume); returns the runner and
    where its training started."""
    start = RecordStart()
    runner = make_runner(run, max_epochs=max_epochs, resume=True,
                         log_level='INFO', hooks=[start])
    runner.train()
    return runner, start.start


def copy_run(trained: Path, dst: Path) -> Path:
    """A copy of the finished run whose pointer names its own files."""
    shutil.copytree(trained, dst)
    (dst / 'last_checkpoint').write_text(str(dst / 'epoch_2.pth'))
    return dst


def test_run_leaves_complete_checkpoints_and_pointer(trained: Path) -> None:
    assert pointer(trained) == str(trained / 'epoch_2.pth')
    names = os.listdir(trained)
    assert not [n for n in names if is_temp_file(n)]
    assert {'epoch_1.pth', 'epoch_2.pth'} <= set(names)
    assert any(n.startswith('best_accuracy') for n in names)
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        assert checkpoint_problem(str(trained / name)) is None
    ckpt = safe_torch_load(str(trained / 'epoch_2.pth'), map_location='cpu')
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4


def test_local_runs_use_the_atomic_backend() -> None:
    assert AtomicCheckpointHook().backend_args == dict(backend='atomic_local')
    assert AtomicCheckpointHook(out_dir='s3://bucket/run').backend_args is None
    custom = dict(backend='local')
    assert AtomicCheckpointHook(backend_args=custom).backend_args is custom


@pytest.mark.parametrize('hook_type', ['AtomicCheckpointHook',
                                       'CheckpointHook'])
def test_crash_while_saving_keeps_the_previous_checkpoint(
        make_runner, tmp_path: Path, hook_type: str) -> None:
    """With max_keep_ckpts=1 the stock hook deletes epoch_1.pth before it
    saves epoch 2, so a crash in that save leaves nothing to resume from;
    the atomic hook saves first and prunes after."""
    runner = make_runner(tmp_path, **{
        'default_hooks.checkpoint.type': hook_type,
        'default_hooks.checkpoint.max_keep_ckpts': 1,
        'default_hooks.checkpoint.save_best': None}, hooks=[FailSecondSave()])
    with pytest.raises(RuntimeError, match='simulated crash'):
        runner.train()
    kept = (tmp_path / 'epoch_1.pth').is_file()
    if hook_type == 'CheckpointHook':
        assert not kept  # the failure this hook exists for
        return
    assert kept and pointer(tmp_path) == str(tmp_path / 'epoch_1.pth')
    assert not (tmp_path / 'epoch_2.pth').exists()
    assert not [n for n in os.listdir(tmp_path) if is_temp_file(n)]


def test_prunes_after_saving(make_runner, tmp_path: Path) -> None:
    make_runner(tmp_path, max_epochs=2, **{
        'default_hooks.checkpoint.max_keep_ckpts': 1}).train()
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith('epoch_'))
    assert kept == ['epoch_2.pth']
    assert pointer(tmp_path) == str(tmp_path / 'epoch_2.pth')


@pytest.mark.parametrize('damage', ['missing', 'truncated', 'binary'])
def test_auto_resume_falls_back_to_newest_complete_checkpoint(
        trained: Path, tmp_path: Path, make_runner, damage: str) -> None:
    run = copy_run(trained, tmp_path / 'run')
    last = run / 'epoch_2.pth'
    if damage == 'missing':
        last.unlink()
    elif damage == 'truncated':
        data = last.read_bytes()
        last.write_bytes(data[:len(data) // 2])
    else:  # the pointer holds no text; epoch_2.pth is the newest
        (run / 'last_checkpoint').write_bytes(b'\x80\x04\x95\x00' * 8)
        last = run / 'epoch_1.pth'
        last.unlink()
    leftover = run / '.epoch_3.pth.12345.0123abcd.tmp'
    leftover.write_bytes(b'partial')

    runner, start = resume(make_runner, run)

    log = ''.join(p.read_text() for p in run.glob('*/*.log'))
    if damage == 'binary':
        assert start == (2, 4)  # epoch_2.pth
        assert 'last_checkpoint holds binary data, not the path of a ' \
            f'checkpoint. Resuming from the newest complete checkpoint, ' \
            f'{run / "epoch_2.pth"}, instead' in log
    else:
        assert start == (1, 2)  # epoch_1.pth
        assert f'names {str(last)!r}, but it' in log
        assert f'newest complete checkpoint, {run / "epoch_1.pth"}' in log
    assert runner.epoch == 3 and runner.iter == 6
    assert pointer(run) == str(run / 'epoch_3.pth')
    assert not leftover.exists()


def test_auto_resume_without_complete_checkpoint_says_what_to_do(
        trained: Path, tmp_path: Path, make_runner) -> None:
    run = copy_run(trained, tmp_path / 'run')
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        (run / name).write_bytes(b'')
    with pytest.raises(FileNotFoundError,
                       match=r'--resume: .*last_checkpoint names .*epoch_2'
                       r'\.pth.*, but it is empty, and no other complete '
                       r'checkpoint.*--resume PATH.*delete'):
        resume(make_runner, run)


def test_binary_pointer_without_checkpoint_says_what_to_do(
        tmp_path: Path, make_runner) -> None:
    (tmp_path / 'last_checkpoint').write_bytes(b'\x00\xff' * 4)
    with pytest.raises(FileNotFoundError,
                       match=r'--resume: .*last_checkpoint holds binary data, '
                       r'not the path of a checkpoint, and no other complete '
                       r'checkpoint.*--resume PATH.*delete'):
        resume(make_runner, tmp_path)


def test_valid_pointer_is_left_alone(trained: Path, tmp_path: Path,
                                     make_runner) -> None:
    run = copy_run(trained, tmp_path / 'run')
    # A newer complete file that the pointer does not name yet (killed
    # between the checkpoint and the pointer write) is not preferred.
    shutil.copy(run / 'epoch_2.pth', run / 'epoch_7.pth')
    _, start = resume(make_runner, run)
    assert start == (2, 4)
    ckpt = torch.load(run / 'epoch_3.pth', weights_only=False)
    assert ckpt['meta']['epoch'] == 3 and ckpt['meta']['iter'] == 6


@pytest.mark.parametrize('damage, reason', [
    ('none', None),
    ('missing', 'it does not exist'),
    ('empty', 'it is empty'),
    ('truncated', 'it is truncated or damaged'),
    ('garbage', 'it is truncated or damaged'),
    ('bit flip', 'it is damaged (bad CRC in '),
])
def test_checkpoint_problem(trained: Path, tmp_path: Path, damage: str,
                            reason) -> None:
    path = tmp_path / 'epoch_2.pth'
    data = (trained / 'epoch_2.pth').read_bytes()
    if damage == 'empty':
        data = b''
    elif damage == 'truncated':
        data = data[:-100]
    elif damage == 'garbage':
        data = b'not a checkpoint'
    elif damage == 'bit flip':
        # The first entry's data starts after its 30-byte local header, the
        # name and the extra field; flip a byte in it.
        start = 30 + int.from_bytes(data[26:28], 'little') + \
            int.from_bytes(data[28:30], 'little')
        data = data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]
    if damage != 'missing':
        path.write_bytes(data)
    problem = checkpoint_problem(str(path))
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(reason)
