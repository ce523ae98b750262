"""tools/train.py and tools/test.py end to end on the demo config: a few
training iterations, a resume round trip (with a changed learning rate), a
refused malicious checkpoint, a checkpoint whose config text is never run,
and the one-sentence errors for a damaged pointer and a work dir that cannot
be written."""
import ctypes
import errno
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmsaol.apis import train
from mmsaol.compat.checkpoint import safe_torch_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = [
    'train_dataloader.dataset.indices=96', 'train_dataloader.batch_size=32',
    'val_dataloader.dataset.indices=64', 'train_cfg.val_interval=1',
    'default_hooks.logger.interval=1',
]


#: One small batch per epoch, for runs that only need to start.
TINY = ['train_dataloader.dataset.indices=16',
        'train_dataloader.batch_size=16', 'val_dataloader.dataset.indices=16']


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
    # The demo's lr is 0.1; resume applies the new one to the schedule.
    proc = run_tool('train.py', 'configs/saol_demo.py', '--work-dir',
                    work_dir, '--resume', '--cfg-options',
                    'train_cfg.max_epochs=2',
                    'optim_wrapper.optimizer.lr=0.05', *SMALL)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 3' in log
    assert 'the config sets the learning rate to 0.05, ' in log
    assert 'its schedule continues scaled by 0.5 (lr now ' in log
    train = [r for r in scalars(work_dir) if 'loss' in r]
    assert [r['epoch'] for r in train] == [2, 2, 2]
    assert [r['iter'] for r in train] == [4, 5, 6]
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=False)
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 6
    (group, ) = ckpt['optimizer']['param_groups']
    assert math.isclose(group['initial_lr'], 0.05, rel_tol=1e-12)
    for scheduler in ckpt['param_schedulers']:
        assert math.isclose(scheduler['base_values'][0], 0.05,
                            rel_tol=1e-12)


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


def test_resume_never_runs_the_config_text_of_a_checkpoint(trained,
                                                           tmp_path):
    """mmengine's Runner.resume executes meta['config']; meta['cfg'] and
    the message hub's cfg are config text too."""
    markers = {key: tmp_path / key for key in ('config', 'cfg', 'hub')}
    code = {key: f"__import__('os').system('touch {path}')\n"
            for key, path in markers.items()}
    checkpoint = safe_torch_load(osp.join(trained, 'epoch_1.pth'),
                                 map_location='cpu')
    checkpoint['meta'].update(config=code['config'], cfg=code['cfg'])
    checkpoint['message_hub']['runtime_info']['cfg'] = code['hub']
    bad = tmp_path / 'bad.pth'
    torch.save(checkpoint, bad)
    # --resume BAD.pth, and auto resume through work_dir/last_checkpoint.
    auto = tmp_path / 'auto'
    auto.mkdir()
    (auto / 'epoch_1.pth').write_bytes(bad.read_bytes())
    (auto / 'last_checkpoint').write_text(str(auto / 'epoch_1.pth'))
    for work_dir, resume in ((tmp_path / 'explicit', ['--resume', str(bad)]),
                             (auto, ['--resume'])):
        proc = run_tool('train.py', 'configs/saol_demo.py', '--work-dir',
                        str(work_dir), *resume, '--cfg-options',
                        'train_cfg.max_epochs=2', *TINY)
        assert 'resumed epoch: 1, iter: 3' in proc.stdout + proc.stderr
        assert not [m for m in markers.values() if m.exists()]


def train_in_process(capsys, work_dir, *options, resume=True):
    """``mmsaol.apis.train.main`` here (faster than a process); returns its
    exit status and stderr."""
    argv = [osp.join(REPO, 'configs', 'saol_demo.py'), '--work-dir',
            str(work_dir), *(['--resume'] if resume else []),
            '--cfg-options', 'train_cfg.max_epochs=1', *TINY, *options]
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return info.value.code, err


@pytest.mark.parametrize('hook', ['AtomicCheckpointHook', 'CheckpointHook'])
def test_binary_last_checkpoint_is_one_sentence(capsys, tmp_path, hook):
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_bytes(b'\x80\x04\x95' + bytes(range(256)))
    code, err = train_in_process(
        capsys, tmp_path, f'default_hooks.checkpoint.type={hook}')
    assert code == 2
    assert f'--resume: {pointer} holds binary data, not the path of a ' \
        'checkpoint' in err
    assert '--resume PATH' in err and f'delete {pointer}' in err


def test_full_work_dir_is_one_sentence(capsys, tmp_path, monkeypatch):
    """The disk fills up while the first checkpoint is written."""

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', full)
    code, err = train_in_process(capsys, tmp_path, resume=False)
    assert code == 2
    assert f'No space left on device while writing {tmp_path}' in err
    assert f'(work dir {tmp_path}). Free space' in err and '--resume' in err
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def drop_dac_override():
    """In the child: root loses CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH
    (prctl PR_CAPBSET_DROP, effective after exec), so file permissions
    apply to it as to any owner."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')


def test_read_only_work_dir_is_one_sentence(tmp_path):
    folder = tmp_path / 'read-only'
    folder.mkdir()
    folder.chmod(0o555)
    work_dir = folder / 'run'
    try:
        proc = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'train.py'),
             'configs/saol_demo.py', '--work-dir', str(work_dir)], cwd=REPO,
            env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
            text=True, timeout=600,
            preexec_fn=drop_dac_override if os.geteuid() == 0 else None)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert f'Cannot write to the work dir {work_dir}: Permission denied ' \
        f'({work_dir}). Make it writable, or pick a folder you can write ' \
        'to with --work-dir DIR.' in proc.stderr
