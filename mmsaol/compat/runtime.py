"""Host fixes for running mmengine 0.10.7 where it assumes CUDA.

mmengine 0.10.7's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``
unconditionally and its default DDP wrapper passes ``device_ids=[LOCAL_RANK]``,
which DDP rejects for CPU modules, so ``--launcher pytorch`` does not run on
a CPU-only host. The Runner skips its own ``init_dist`` when a process group
already exists, so on such a host we create the gloo group ourselves and ask
for a wrapper without device ids. Can go when mmengine handles CPU-only
distributed training itself.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def _init_cpu_process_group(launcher: str) -> None:
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            import subprocess
            nodes = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {nodes} | head -n1')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables '
            f'{missing}; start the job with tools/dist_train.sh (torchrun) '
            'or tools/slurm_train.sh, or use --launcher none.')
    dist.init_process_group(backend='gloo')


def adapt_to_host(cfg: Config, amp: bool = False) -> Config:
    """Adjust a merged config to the host it runs on.

    - CPU-only distributed run: create the gloo process group and use
      ``MMDistributedDataParallel`` without ``device_ids``.
    - ``--amp`` without CUDA: mmengine's ``AmpOptimWrapper`` asserts CUDA, so
      use mmsaol's ``CPUAmpOptimWrapper`` (bfloat16 autocast) instead.

    Args:
        cfg (Config): the merged config (``cfg.launcher`` set).
        amp (bool): whether ``--amp`` was given.

    Returns:
        Config: the same config, changed in place.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher != 'none' and not torch.cuda.is_available():
        _init_cpu_process_group(launcher)
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg['backend'] = 'gloo'
        if cfg.get('model_wrapper_cfg') is None:
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                         device_ids=None)
    if amp and not torch.cuda.is_available():
        cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    return cfg
