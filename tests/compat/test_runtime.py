"""adapt_to_host: CPU-only distributed training (gloo), SyncBN, CPU --amp,
the AMP warning filter, the Slurm master host without a shell, and the
launch scripts' argument handling."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from mmsaol.compat.amp import (
    MMENGINE_AMP_MODULE,
    CPUAmpOptimWrapper,
    silence_mmengine_gradscaler_warning,
)
from mmsaol.compat.runtime import adapt_to_host, first_slurm_host

DEMO = 'configs/saol_demo.py'
BASH = shutil.which('bash')
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(),
                              reason='tests the CPU-only host path')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def torchrun_env(monkeypatch):
    """The environment torchrun gives a 1-process job; the process group
    that adapt_to_host creates is destroyed afterwards."""
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _demo_cfg(tmp_path, **fields) -> Config:
    """The demo config shrunk to a few iterations without validation."""
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({
        'work_dir': str(tmp_path),
        'train_dataloader.batch_size': 8,
        'train_dataloader.dataset.copies': 1,
        'train_dataloader.dataset.indices': 16,
        'train_cfg.max_epochs': 1,
        'default_hooks.checkpoint.save_best': None,
    })
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.merge_from_dict(fields)
    return cfg


@CPU_ONLY
def test_cpu_launcher_trains_end_to_end(tmp_path, torchrun_env):
    """--launcher pytorch on a CPU-only host: gloo group, mmengine's default
    wrapper without device ids, SyncBN turned into BN, and the Runner
    (which then skips its own init_dist) trains."""
    cfg = _demo_cfg(tmp_path, launcher='pytorch', sync_bn='torch')
    cfg.model.backbone.norm_cfg = dict(type='SyncBN')
    cfg.model.head.norm_cfg = dict(type='SyncBN')
    adapt_to_host(cfg)
    assert dist.is_initialized() and dist.get_backend() == 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    wrapper = dict(cfg.model_wrapper_cfg)
    assert wrapper.pop('device_ids', 'missing') is None
    assert wrapper.pop('find_unused_parameters') is False
    assert wrapper in (dict(type='MMDistributedDataParallel',
                            forward_sync_buffers=False),
                       dict(type='MMDistributedDataParallel',
                            broadcast_buffers=False))
    assert 'SyncBN' not in cfg.pretty_text and 'sync_bn' not in cfg

    runner = Runner.from_cfg(cfg)
    assert runner.distributed
    assert isinstance(runner.model, MMDistributedDataParallel)
    runner.train()
    assert runner.iter == 2


@CPU_ONLY
def test_user_ddp_wrapper_gets_no_device_ids(torchrun_env):
    cfg = Config(dict(launcher='pytorch', model=dict(),
                      model_wrapper_cfg=dict(
                          type='MMDistributedDataParallel',
                          find_unused_parameters=True)))
    adapt_to_host(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         find_unused_parameters=True,
                                         device_ids=None)


@CPU_ONLY
def test_slurm_environment_is_read(monkeypatch, torchrun_env):
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(key)
    for key, value in dict(SLURM_PROCID='0', SLURM_NTASKS='1',
                           SLURM_LOCALID='0',
                           SLURM_NODELIST='node1').items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(launcher='slurm', model=dict()))
    adapt_to_host(cfg)
    assert dist.is_initialized() and dist.get_world_size() == 1
    assert cfg.launcher == 'pytorch'


def _fake_command(folder: Path, name: str, body: str) -> Path:
    """An executable ``folder/name`` (test double) running ``body``."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f'#!{BASH}\n{body}\n')
    path.chmod(0o755)
    return path


def _recorded(path: Path) -> list:
    """The arguments a test double wrote, NUL-separated, to ``path``."""
    return path.read_bytes().decode().split('\0')[:-1]


@CPU_ONLY
def test_slurm_nodelist_is_not_shell_text(tmp_path, monkeypatch,
                                          torchrun_env):
    """mmengine builds ``scontrol show hostname <SLURM_NODELIST> | head
    -n1`` as shell text; a node list ``x; touch F`` ran ``touch F``."""
    _fake_command(tmp_path / 'bin', 'scontrol',
                  'printf "%s\\0" "$@" > "$RECORD"; echo 127.0.0.1')
    monkeypatch.setenv('PATH', f'{tmp_path / "bin"}{os.pathsep}'
                       f'{os.environ["PATH"]}')
    monkeypatch.setenv('RECORD', str(tmp_path / 'argv'))
    marker = tmp_path / 'F'
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR'):
        monkeypatch.delenv(key)
    for key, value in dict(SLURM_PROCID='0', SLURM_NTASKS='1',
                           SLURM_LOCALID='0',
                           SLURM_NODELIST=f'x; touch {marker}').items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(launcher='slurm', model=dict()))
    adapt_to_host(cfg)
    assert not marker.exists()
    assert _recorded(tmp_path / 'argv') == ['show', 'hostnames',
                                            f'x; touch {marker}']
    assert os.environ['MASTER_ADDR'] == '127.0.0.1'
    assert dist.is_initialized() and cfg.launcher == 'pytorch'


def test_slurm_host_without_scontrol(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol
    assert first_slurm_host('node7,node8') == 'node7'
    with pytest.raises(ValueError, match='set MASTER_ADDR'):
        first_slurm_host('node[1-4]')
    _fake_command(tmp_path, 'scontrol', 'echo "bad node list" >&2; exit 1')
    with pytest.raises(ValueError, match=r"scontrol show hostnames 'n\[' "
                       r'failed \(bad node list\); set MASTER_ADDR'):
        first_slurm_host('n[')


@CPU_ONLY
def test_slurm_launcher_outside_srun(monkeypatch):
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    monkeypatch.delenv('SLURM_PROCID', raising=False)
    with pytest.raises(ValueError, match=r"--launcher slurm needs the "
                       r"environment variables \['SLURM_PROCID'"):
        adapt_to_host(Config(dict(launcher='slurm', model=dict())))


# Each script, its arguments, and what it must run: the test double
# (srun or the interpreter) records every argument it gets.
_SPACED = ('my configs/a b.py', 'work dir/x y', 'x; touch F')


@pytest.mark.parametrize('script, args, runs, expected', [
    ('slurm_train.sh', ['part', 'job', _SPACED[0], _SPACED[1], '--amp',
                        _SPACED[2]], 'srun',
     ['-p', 'part', '--job-name=job', '--ntasks=1', '--ntasks-per-node=1',
      '--cpus-per-task=2', '--kill-on-bad-exit=1', '--qos=low', '--foo=*',
      'python', '-u', '{tools}/train.py', _SPACED[0],
      f'--work-dir={_SPACED[1]}', '--launcher=slurm', '--amp', _SPACED[2]]),
    ('slurm_test.sh', ['part', 'job', _SPACED[0], 'ckpt dir/e 1.pth',
                       _SPACED[2]], 'srun',
     ['-p', 'part', '--job-name=job', '--ntasks=1', '--ntasks-per-node=1',
      '--cpus-per-task=2', '--kill-on-bad-exit=1', '--qos=low', '--foo=*',
      'python', '-u', '{tools}/test.py', _SPACED[0], 'ckpt dir/e 1.pth',
      '--launcher=slurm', _SPACED[2]]),
    ('dist_train.sh', [_SPACED[0], '2', '--work-dir', _SPACED[1],
                       _SPACED[2]], 'python',
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      '{tools}/train.py', _SPACED[0], '--launcher', 'pytorch',
      '--work-dir', _SPACED[1], _SPACED[2]]),
    ('dist_test.sh', [_SPACED[0], 'ckpt dir/e 1.pth', '2', _SPACED[2]],
     'python',
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      '{tools}/test.py', _SPACED[0], 'ckpt dir/e 1.pth', '--launcher',
      'pytorch', _SPACED[2]]),
])
def test_launch_scripts_pass_paths_as_single_arguments(
        tmp_path, script, args, runs, expected):
    """Paths with spaces stay one argument; nothing is evaluated or globbed
    (a file ``--foo=bar`` next to SRUN_ARGS='--foo=*' stays unmatched); the
    repository is put before an unset PYTHONPATH without an empty entry
    (which would put the working directory on the path)."""
    tools = os.path.abspath('tools')
    bin_dir = tmp_path / 'bin'
    _fake_command(bin_dir, runs, 'printf "%s\\0" "$@" > "$RECORD"; '
                  'printf "%s" "$PYTHONPATH" > "$RECORD.path"')
    work = tmp_path / 'cwd'
    work.mkdir()
    (work / '--foo=bar').touch()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(PATH=f'{bin_dir}{os.pathsep}{env["PATH"]}',
               RECORD=str(tmp_path / 'argv'), PYTHON='python', GPUS='1',
               GPUS_PER_NODE='1', GRES='', CPUS_PER_TASK='2',
               SRUN_ARGS='--qos=low --foo=*')
    for key in ('NNODES', 'NODE_RANK', 'PORT', 'MASTER_ADDR'):
        env.pop(key, None)
    result = subprocess.run(['bash', os.path.join(tools, script), *args],
                            cwd=work, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert _recorded(tmp_path / 'argv') == [
        a.format(tools=tools) for a in expected]
    assert (tmp_path / 'argv.path').read_text() == f'{tools}/..'
    assert not (work / 'F').exists()


@CPU_ONLY
def test_missing_launcher_environment_is_explained(monkeypatch):
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match='dist_train.sh'):
        adapt_to_host(Config(dict(launcher='pytorch', model=dict())))
    with pytest.raises(ValueError, match='--launcher mpi'):
        adapt_to_host(Config(dict(launcher='mpi', model=dict())))


@CPU_ONLY
@pytest.mark.parametrize('optim_wrapper,amp,dtype', [
    (dict(type='OptimWrapper'), True, torch.bfloat16),
    (dict(type='AmpOptimWrapper', loss_scale='dynamic'), True,
     torch.bfloat16),
    (dict(type='AmpOptimWrapper', dtype='float16'), False, torch.float16),
    (dict(type='AmpOptimWrapper', dtype=None), False, torch.bfloat16),
])
def test_amp_on_cpu_uses_cpu_autocast(optim_wrapper, amp, dtype):
    """``--amp`` (mmpretrain's train.py sets AmpOptimWrapper with dynamic
    loss scaling) or an AmpOptimWrapper config on a CPU host."""
    optim_wrapper = dict(optim_wrapper, optimizer=dict(type='SGD', lr=0.1))
    cfg = Config(dict(launcher='none', optim_wrapper=optim_wrapper))
    adapt_to_host(cfg, amp=amp)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8, stem_channels=8))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, CPUAmpOptimWrapper)
    with wrapper.optim_context(model):
        assert torch.get_autocast_dtype('cpu') == dtype
        assert torch.is_autocast_enabled('cpu')


def test_cpu_amp_rejects_other_dtypes():
    with pytest.raises(ValueError, match='optim_wrapper.dtype'):
        CPUAmpOptimWrapper(optimizer=torch.optim.SGD(
            [torch.nn.Parameter(torch.zeros(1))], lr=0.1), dtype='float32')


def test_no_change_without_launcher_or_amp():
    cfg = Config(dict(launcher='none', optim_wrapper=dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    before = cfg.to_dict()
    adapt_to_host(cfg)
    assert cfg.to_dict() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CPU-only host')
def test_no_pinned_memory_on_a_cpu_host():
    # mmpretrain's tools default every loader to pin_memory=True.
    cfg = Config(dict(launcher='none', **{
        f'{split}_dataloader': dict(batch_size=2, pin_memory=True)
        for split in ('train', 'val', 'test')}))
    adapt_to_host(cfg)
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].pin_memory is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_amp_on_cuda_keeps_mmengine_wrapper():
    cfg = Config(dict(launcher='none', optim_wrapper=dict(
        type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    adapt_to_host(cfg, amp=True)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'


@pytest.mark.parametrize('module,silenced', [
    (MMENGINE_AMP_MODULE.replace('\\', ''), True),
    ('user_code', False),
])
def test_only_mmengines_gradscaler_warning_is_silenced(module, silenced):
    """torch's deprecated ``torch.cuda.amp.GradScaler()``, called from
    mmengine's AMP wrapper module (as mmengine 0.10.7 does) or from other
    code: only the former FutureWarning is dropped."""
    code = compile('from torch.cuda.amp import GradScaler\n'
                   'GradScaler(enabled=False)', 'caller.py', 'exec')
    with warnings.catch_warnings(record=True) as caught:
        # pytest resets the filters for each test: install ours again.
        warnings.simplefilter('always')
        silence_mmengine_gradscaler_warning()
        exec(code, {'__name__': module})
    deprecations = [w for w in caught if w.category is FutureWarning
                    and 'GradScaler' in str(w.message)]
    assert len(deprecations) == (0 if silenced else 1)
