"""SIGKILL the demo training at several moments, one of them in the middle of
a checkpoint write, resume each time with ``tools/train.py --resume``, and
check that the run ends exactly where an uninterrupted run ends.

The demo config (configs/saol_demo.py) is shrunk to 3 epochs of 2
iterations (32 canvases, batch 16, 8-wide backbone) and uses
AtomicCheckpointHook and NonFiniteLossHook. The killed runs go through
``mmsaol.apis.cli.train`` (what ``tools/train.py`` runs) inside a small
driver that adds one test hook, KillTestRecorder:

- mmengine restores model, optimizer, schedulers, iteration counter and
  data order on resume, but not the global RNG states, so CutMix would draw
  other boxes after a resume and the runs would differ in their last
  digits. The recorder re-seeds the global RNGs at every epoch start, which
  makes an interrupted run comparable bit for bit with an uninterrupted one;
- it appends every iteration's sample indices, learning rate and loss, and
  every validation's metrics, to ``work_dir/record.jsonl``.

To kill a run while it writes a checkpoint, the first run's ``os.fsync``
hangs on the temporary file of ``epoch_2.pth`` (Linux: the name is read
from ``/proc/self/fd``), and the test kills it there, between the write
and the rename.
"""
from __future__ import annotations

import importlib.util
import json
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from mmsaol.apis import cli
from mmsaol.compat.checkpoint import safe_torch_load
from mmsaol.engine import checkpoint_problem
from mmsaol.engine.hooks.atomic_file import is_temp_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
THREADS = 2  # as tests/conftest.py: the same kernels give the same bits

CONFIG = f'''
_base_ = [{osp.join(REPO, 'configs', 'saol_demo.py')!r}]
custom_imports = dict(imports=['mmsaol', 'mmsaol.engine'],
                      allow_failed_imports=False)
model = dict(backbone=dict(stem_channels=8, base_channels=8),
             head=dict(in_channels=(16, 32, 64), channels=16))
train_dataloader = dict(batch_size=16, dataset=dict(copies=1, indices=32))
val_dataloader = dict(dataset=dict(indices=32))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=3, val_interval=1)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'),
                     logger=dict(interval=1))
custom_hooks = [dict(type='NonFiniteLossHook'),
                dict(type='KillTestRecorder')]
'''

DRIVER = f'''
"""tools/train.py plus the test's KillTestRecorder hook."""
import json
import os
import os.path as osp
import sys
import time

import torch
from mmengine.hooks import Hook
from mmengine.runner import set_random_seed
from mmpretrain.registry import HOOKS

torch.set_num_threads({THREADS})


@HOOKS.register_module(force=True)
class KillTestRecorder(Hook):

    def _write(self, runner, record):
        with open(osp.join(runner.work_dir, 'record.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\\n')

    def before_train_epoch(self, runner):
        set_random_seed(1000 + runner.epoch)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self._write(runner, dict(
            iter=runner.iter,
            samples=[int(s.sample_idx) for s in data_batch['data_samples']],
            lr=runner.optim_wrapper.get_lr()['lr'][0],
            loss=float(outputs['loss'].detach())))

    def after_val_epoch(self, runner, metrics=None):
        self._write(runner, dict(val_epoch=runner.epoch,
                                 metrics=dict(metrics)))


def stall_fsync(name_part):
    """Make os.fsync hang (until the test kills the process) on the file
    whose name contains name_part (Linux: the name is read from /proc)."""
    real_fsync = os.fsync

    def fsync(fd):
        if name_part in os.readlink(f'/proc/self/fd/{{fd}}'):
            time.sleep(600)
        real_fsync(fd)

    os.fsync = fsync


def main(argv):
    from mmsaol.apis.cli import train
    stall = os.environ.get('KILL_TEST_STALL_FSYNC')
    if stall:
        stall_fsync(stall)
    train(argv)


if __name__ == '__main__':
    main(sys.argv[1:])
'''


def read_records(work_dir: Path) -> List[dict]:
    path = work_dir / 'record.jsonl'
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    # A kill can cut the last line short.
    return [json.loads(line) for line in lines if line.endswith('}')]


def pointer(work_dir: Path) -> str:
    path = work_dir / 'last_checkpoint'
    return path.read_text() if path.exists() else ''


class Chain:
    """Starts, watches and kills the training processes of one run."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.work_dir = tmp_path / 'killed'
        self.logs: List[str] = []

    def start(self, resume: bool, env: Optional[Dict[str, str]] = None
              ) -> subprocess.Popen:
        args = [sys.executable, str(self.tmp_path / 'driver.py'),
                str(self.tmp_path / 'config.py'), '--work-dir',
                str(self.work_dir)] + (['--resume'] if resume else [])
        log = open(self.tmp_path / f'log{len(self.logs)}.txt', 'w')
        self.logs.append(log.name)
        return subprocess.Popen(
            args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS=str(THREADS), **(env or {})))

    def kill_when(self, proc: subprocess.Popen, event: Callable[[], bool],
                  delay: float = 0.0, timeout: float = 240) -> bool:
        """SIGKILL ``proc`` ``delay`` seconds after ``event()`` holds.
        Returns False if the run finished (successfully) first."""
        deadline = time.monotonic() + timeout
        while not event():
            if proc.poll() is not None:
                assert proc.returncode == 0, self.log_tail()
                return False
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        return proc.wait() == -signal.SIGKILL

    def finish(self, proc: subprocess.Popen) -> None:
        assert proc.wait(timeout=300) == 0, self.log_tail()

    def log_tail(self) -> str:
        with open(self.logs[-1]) as f:
            return f.read()[-3000:]

    def temp_files(self) -> List[str]:
        return [n for n in os.listdir(self.work_dir) if is_temp_file(n)]


def resumed_from(log_file: str) -> str:
    with open(log_file) as f:
        log = f.read()
    marker = 'Auto resumed from the latest checkpoint '
    assert marker in log, log[-3000:]
    return log.split(marker, 1)[1].split('.pth', 1)[0] + '.pth'


def by_iteration(records: List[dict]) -> Dict[int, List[dict]]:
    runs: Dict[int, List[dict]] = {}
    for record in records:
        if 'iter' in record:
            runs.setdefault(record['iter'], []).append(record)
    return runs


def test_killed_runs_resume_to_the_uninterrupted_result(
        tmp_path: Path) -> None:
    (tmp_path / 'config.py').write_text(CONFIG)
    (tmp_path / 'driver.py').write_text(DRIVER)
    seed = random.randrange(2**32)
    print(f'random kill moments: seed {seed}')  # shown if the test fails
    rng = random.Random(seed)
    chain = Chain(tmp_path)
    work = chain.work_dir

    # 1. Killed while writing epoch_2.pth: its temporary file is there.
    proc = chain.start(resume=False,
                       env={'KILL_TEST_STALL_FSYNC': '/.epoch_2.pth.'})
    assert chain.kill_when(proc, lambda: work.is_dir() and any(
        n.startswith('.epoch_2.pth.') for n in chain.temp_files()))
    assert [n for n in chain.temp_files() if n.startswith('.epoch_2.pth.')]
    assert not (work / 'epoch_2.pth').exists()
    assert pointer(work) == str(work / 'epoch_1.pth')

    # 2., 3. Resumed, and killed at a random moment: up to 0.1 s after a
    # random one of the first iterations it trains, i.e. in the middle of
    # an iteration, a validation, a checkpoint write or anything else.
    kills = 1
    for first_k in (2, 1):
        last, done = pointer(work), len(read_records(work))
        assert checkpoint_problem(last) is None
        proc = chain.start(resume=True)
        k = rng.randint(1, first_k)
        kills += chain.kill_when(
            proc, lambda done=done, k=k: len(read_records(work)) >= done + k,
            delay=rng.uniform(0, 0.1))
        assert resumed_from(chain.logs[-1]) == last

    # 4. Resumed to the end.
    last = pointer(work)
    chain.finish(chain.start(resume=True))
    assert resumed_from(chain.logs[-1]) == last
    assert pointer(work) == str(work / 'epoch_3.pth')
    assert chain.temp_files() == []
    assert kills >= 2, 'the random kills came too late: the run had ended'
    assert len(chain.logs) == 4

    # The uninterrupted run, in this process (same entry point and driver).
    spec = importlib.util.spec_from_file_location('kill_test_driver',
                                                  tmp_path / 'driver.py')
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    reference = tmp_path / 'reference'
    driver.main([str(tmp_path / 'config.py'), '--work-dir', str(reference)])

    # Same data order, learning rates and losses at every iteration, in
    # every process that ran it.
    expected = by_iteration(read_records(reference))
    assert sorted(expected) == list(range(6))
    for it, records in by_iteration(read_records(work)).items():
        for record in records:
            assert record['samples'] == expected[it][0]['samples'], it
            assert record['lr'] == expected[it][0]['lr'], it
            assert abs(record['loss'] - expected[it][0]['loss']) <= \
                1e-6 * abs(expected[it][0]['loss']), (it, record)
    assert set(by_iteration(read_records(work))) == set(range(6))

    # Same final weights, and the same metrics from tools/test.py (a run
    # killed between its last checkpoint and the end of that epoch's
    # validation resumes to the end without validating again).
    got = safe_torch_load(str(work / 'epoch_3.pth'), map_location='cpu')
    want = safe_torch_load(str(reference / 'epoch_3.pth'),
                           map_location='cpu')
    assert got['meta']['epoch'] == 3 and got['meta']['iter'] == 6
    for key, value in want['state_dict'].items():
        assert torch.allclose(got['state_dict'][key].float(), value.float(),
                              rtol=1e-5, atol=1e-6), key
    want_metrics = [r['metrics'] for r in read_records(reference)
                    if r.get('val_epoch') == 3]
    metrics = cli.test([str(tmp_path / 'config.py'), str(work / 'epoch_3.pth'),
                    '--work-dir', str(tmp_path / 'test')])
    assert metrics == want_metrics[0]
