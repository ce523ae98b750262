"""SIGKILL the demo training three times (while it writes a best checkpoint,
while it writes an epoch checkpoint, and between a checkpoint and the
``last_checkpoint`` pointer), resume each time with ``--resume``, and check
that the run ends bit for bit where an uninterrupted run ends.

The demo config (configs/saol_demo.py: AtomicCheckpointHook with
``save_best='auto'`` and ``max_keep_ckpts=2``, NonFiniteLossHook,
CheckpointMatchHook, seed 0) is shrunk to 3 epochs of 2 iterations (32
canvases, batch 16, 8-wide backbone), validated after every epoch. Every run
goes through ``mmsaol.apis.train.main`` (what ``tools/train.py`` runs); the
killed ones in a small driver that adds no hook and touches no random state:
it only makes ``os.fsync`` hang on one temporary file (Linux: the name is
read from ``/proc/self/fd``), so that the test kills the process between the
write of a file and its rename. The resumed runs restore the random state
from the checkpoints themselves (SafeResumeHook).

The uninterrupted run goes first (in the test process): it tells which
epochs wrote a best checkpoint, and the first kill hits the last of those
writes (one that replaces an earlier best checkpoint unless epoch 1 stayed
the best).
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from mmsaol.apis import train
from mmsaol.compat.checkpoint import safe_torch_load
from mmsaol.engine import checkpoint_problem
from mmsaol.engine.hooks.atomic_file import is_temp_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: Threads of every run (tests/conftest.py gives this process one): the
#: same kernels on the same machine give the same bits.
THREADS = 1

CONFIG = f'''
_base_ = [{osp.join(REPO, 'configs', 'saol_demo.py')!r}]
model = dict(backbone=dict(stem_channels=8, base_channels=8),
             head=dict(in_channels=(16, 32, 64), channels=16))
train_dataloader = dict(batch_size=16, dataset=dict(copies=1, indices=32))
val_dataloader = dict(dataset=dict(indices=32))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=3, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
'''

DRIVER = '''
"""tools/train.py, whose os.fsync hangs on one file if asked to."""
import os
import sys
import time


def stall_fsync(name_part):
    """Make os.fsync hang (until the test kills the process) on the file
    whose name contains name_part (Linux: the name is read from /proc)."""
    real_fsync = os.fsync

    def fsync(fd):
        if name_part in os.readlink(f'/proc/self/fd/{fd}'):
            time.sleep(600)
        real_fsync(fd)

    os.fsync = fsync


if __name__ == '__main__':
    if os.environ.get('KILL_TEST_STALL_FSYNC'):
        stall_fsync(os.environ['KILL_TEST_STALL_FSYNC'])
    from mmsaol.apis.train import main
    main(sys.argv[1:])
'''

BEST_SAVED = re.compile(r'The best checkpoint with \S+ \S+ at (\d+) epoch is '
                        r'saved to (\S+\.pth)\.')


class Runs:
    """Starts, watches and kills the training processes of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.logs: List[Path] = []
        (tmp_path / 'config.py').write_text(CONFIG)
        (tmp_path / 'driver.py').write_text(DRIVER)

    def start(self, work_dir: Path, resume: bool,
              stall: Optional[str] = None) -> subprocess.Popen:
        args = [sys.executable, str(self.tmp_path / 'driver.py'),
                str(self.tmp_path / 'config.py'), '--work-dir',
                str(work_dir)] + (['--resume'] if resume else [])
        log = self.tmp_path / f'log{len(self.logs)}.txt'
        self.logs.append(log)
        env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
        env.pop('KILL_TEST_STALL_FSYNC', None)
        if stall:
            env['KILL_TEST_STALL_FSYNC'] = stall
        with open(log, 'w') as out:
            return subprocess.Popen(args, cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT, env=env)

    def kill_at_temp_file(self, proc: subprocess.Popen, work_dir: Path,
                          prefix: str, timeout: float = 300) -> str:
        """SIGKILL ``proc`` once it hangs in the fsync of the temporary
        file of ``prefix`` (e.g. ``'epoch_2.pth'``); returns its name."""
        deadline = time.monotonic() + timeout
        while True:
            found = [n for n in temp_files(work_dir)
                     if n.startswith(f'.{prefix}.')]
            if found:
                break
            assert proc.poll() is None, ('ended before writing ' + prefix,
                                         self.log_tail())
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        return found[0]

    def finish(self, proc: subprocess.Popen) -> None:
        assert proc.wait(timeout=300) == 0, self.log_tail()

    def log_tail(self) -> str:
        return self.logs[-1].read_text()[-3000:]

    def resumed_from(self) -> str:
        log = self.logs[-1].read_text()
        marker = 'Auto resumed from the latest checkpoint '
        assert marker in log, log[-3000:]
        return log.split(marker, 1)[1].split('\n', 1)[0].rstrip('.')


def temp_files(work_dir: Path) -> List[str]:
    if not work_dir.is_dir():
        return []
    return [n for n in os.listdir(work_dir) if is_temp_file(n)]


def pointer(work_dir: Path) -> str:
    path = work_dir / 'last_checkpoint'
    return path.read_text() if path.exists() else 'None'


def records(work_dir: Path) -> Dict[str, List[dict]]:
    """The logged training and validation values of every process that
    ran in ``work_dir``, by step (timings left out)."""
    steps: Dict[str, List[dict]] = {}
    for path in glob.glob(str(work_dir / '*' / 'vis_data' /
                              'scalars.json')):
        with open(path) as f:
            for line in f:
                if not line.rstrip().endswith('}'):
                    continue  # cut short by a kill
                record = json.loads(line)
                kind = 'iter' if 'loss' in record else 'val'
                values = {k: v for k, v in record.items()
                          if k.startswith(('loss', 'lr', 'accuracy'))}
                steps.setdefault(f'{kind} {record["step"]}',
                                 []).append(values)
    return steps


def names(work_dir: Path, pattern: str) -> List[str]:
    return sorted(osp.basename(p) for p in glob.glob(str(work_dir /
                                                         pattern)))


def same(got, want) -> bool:
    """Exact equality of nested checkpoint data (tensors bit for bit)."""
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.dtype == want.dtype \
            and torch.equal(got, want)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        return type(got) is type(want) and len(got) == len(want) and all(
            same(g, w) for g, w in zip(got, want))
    return got == want


def assert_same_checkpoint(got_path: Path, want_path: Path) -> None:
    got = safe_torch_load(str(got_path), map_location='cpu')
    want = safe_torch_load(str(want_path), map_location='cpu')
    for key in ('epoch', 'iter', 'rng_state'):
        assert same(got['meta'][key], want['meta'][key]), key
    for key, value in want['state_dict'].items():
        assert same(got['state_dict'][key], value), key
    assert got['state_dict'].keys() == want['state_dict'].keys()
    for key in ('optimizer', 'param_schedulers'):
        assert same(got.get(key), want.get(key)), key


def test_killed_runs_resume_to_the_uninterrupted_result(
        tmp_path: Path) -> None:
    runs = Runs(tmp_path)

    # The uninterrupted run, in this process (same entry point, same
    # number of threads).
    assert torch.get_num_threads() == THREADS
    reference = tmp_path / 'reference'
    train.main([str(tmp_path / 'config.py'), '--work-dir', str(reference)])
    (log, ) = glob.glob(str(reference / '*' / '*.log'))
    bests = BEST_SAVED.findall(Path(log).read_text())
    assert bests and bests[0][0] == '1'  # the first validation is a best
    best_epoch, best_name = int(bests[-1][0]), bests[-1][1]
    earlier_bests = {name for _, name in bests[:-1]}

    work = tmp_path / 'killed'

    # 1. Killed while it writes the last best checkpoint: the previous
    # best checkpoint is still there.
    runs.kill_at_temp_file(
        runs.start(work, resume=False, stall=f'/.{best_name}.'), work,
        best_name)
    assert not (work / best_name).exists()
    if earlier_bests:
        assert (work / bests[-2][1]).is_file()
    assert checkpoint_problem(pointer(work)) is None or best_epoch == 1

    # 2. Resumed, and killed while it writes an epoch checkpoint.
    epoch = max(best_epoch, 2)
    last = pointer(work)
    runs.kill_at_temp_file(
        runs.start(work, resume=True, stall=f'/.epoch_{epoch}.pth.'), work,
        f'epoch_{epoch}.pth')
    assert runs.resumed_from() == last
    assert not (work / f'epoch_{epoch}.pth').exists()
    assert (work / best_name).is_file()

    # 3. Resumed, and killed after its first checkpoint is complete, while
    # it writes the pointer to it.
    last = pointer(work)
    assert checkpoint_problem(last) is None
    runs.kill_at_temp_file(
        runs.start(work, resume=True, stall='/.last_checkpoint.'), work,
        'last_checkpoint')
    assert runs.resumed_from() == last
    assert pointer(work) == last

    # 4. Resumed to the end.
    runs.finish(runs.start(work, resume=True))
    assert runs.resumed_from() == last
    assert pointer(work) == str(work / 'epoch_3.pth')
    assert temp_files(work) == []

    # Same files, weights, optimizer and scheduler states, random state;
    # the same losses, learning rates and accuracies at every step, in
    # every process that ran it.
    assert names(work, '*.pth') == names(reference, '*.pth')
    assert names(work, 'best_*.pth') == [best_name]
    for name in names(reference, '*.pth'):
        assert_same_checkpoint(work / name, reference / name)
    want, got = records(reference), records(work)
    assert sorted(got) == sorted(want)
    for step, values in got.items():
        assert all(v == want[step][0] for v in values), step
