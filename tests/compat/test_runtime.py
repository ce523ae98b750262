"""adapt_to_host: CPU-only distributed training (gloo), SyncBN, CPU --amp,
and the AMP warning filter."""
from __future__ import annotations

import socket
import warnings

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
from mmsaol.compat.runtime import adapt_to_host

DEMO = 'configs/saol_demo.py'
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
    adapt_to_host(Config(dict(launcher='slurm', model=dict())))
    assert dist.is_initialized() and dist.get_world_size() == 1


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
