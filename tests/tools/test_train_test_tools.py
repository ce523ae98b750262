"""tools/train.py and tools/test.py end to end on the demo config: a few
training iterations, a resume round trip, and a refused malicious
checkpoint."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = [
    'train_dataloader.dataset.indices=96', 'train_dataloader.batch_size=32',
    'val_dataloader.dataset.indices=64', 'train_cfg.val_interval=1',
    'default_hooks.logger.interval=1',
]


def run_tool(tool, *args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', tool), *args], cwd=REPO,
        env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def scalars(work_dir):
    lines = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    return lines


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch of the demo config (3 iterations of 32)."""
    work_dir = str(tmp_path_factory.mktemp('demo'))
    run_tool('train.py', 'configs/saol_demo.py', '--work-dir', work_dir,
             '--cfg-options', 'train_cfg.max_epochs=1', *SMALL)
    return work_dir


def test_train_logs_losses_and_accuracy(trained):
    logs = scalars(trained)
    train = [r for r in logs if 'loss' in r]
    assert len(train) == 3
    for key in ('loss_cls', 'loss_gapfc', 'loss_distill', 'loss_spatial',
                'loss_attention'):
        assert all(key in r for r in train), key
    assert any('accuracy/top1' in r for r in logs)
    assert osp.isfile(osp.join(trained, 'epoch_1.pth'))


def test_resume_continues_from_last_checkpoint(trained, tmp_path):
    work_dir = str(tmp_path / 'resumed')
    os.makedirs(work_dir)
    for name in ('epoch_1.pth', 'last_checkpoint'):
        src = osp.join(trained, name)
        with open(src, 'rb') as f:
            data = f.read()
        if name == 'last_checkpoint':
            data = osp.join(work_dir, 'epoch_1.pth').encode()
        with open(osp.join(work_dir, name), 'wb') as f:
            f.write(data)
    proc = run_tool('train.py', 'configs/saol_demo.py', '--work-dir',
                    work_dir, '--resume', '--cfg-options',
                    'train_cfg.max_epochs=2', *SMALL)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 3' in log
    train = [r for r in scalars(work_dir) if 'loss' in r]
    assert [r['epoch'] for r in train] == [2, 2, 2]
    assert [r['iter'] for r in train] == [4, 5, 6]
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=False)
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 6


def test_test_tool_evaluates_both_heads(trained, tmp_path):
    for head in ('saol', 'gapfc'):
        out = str(tmp_path / f'{head}.json')
        run_tool('test.py', 'configs/saol_demo.py',
                 osp.join(trained, 'epoch_1.pth'), '--head', head,
                 '--out', out, '--out-item', 'metrics', '--work-dir',
                 str(tmp_path), '--cfg-options',
                 'test_dataloader.dataset.indices=64')
        with open(out) as f:
            assert 0 <= json.load(f)['accuracy/top1'] <= 100


class Exploit:
    """Unpickling this object runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Exploit(marker)}, path)
    proc = run_tool('test.py', 'configs/saol_demo.py', str(path),
                    '--work-dir', str(tmp_path), check=False)
    assert proc.returncode != 0
    assert 'system' in proc.stderr and 'not' in proc.stderr
    assert not marker.exists()
