"""Host fixes for running mmengine 0.10.7 where it assumes an accelerator.

For mmengine 0.10.7 (the last release); each fix can go when mmengine does
the same itself.

- ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` unconditionally
  and the default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which DDP
  rejects for CPU modules, so ``--launcher pytorch|slurm`` does not run on a
  CPU-only host. The Runner skips its own ``init_dist`` when a process group
  already exists, so on such a host we create the gloo group ourselves and
  ask for the same wrapper as mmengine's default, without device ids.
- mmengine's default wrapper passes ``broadcast_buffers=False``, which
  torch 2.14 deprecates with a FutureWarning on every distributed run; we
  spell the same wrapper with ``forward_sync_buffers=False`` where torch
  has it.
- torch's ``SyncBatchNorm`` refuses CPU tensors in a distributed run, so on
  a CPU-only host SyncBN layers become BN (per-process statistics), as
  mmengine itself does for a non-distributed run.
- mmengine finds the Slurm master host with a shell command built from
  ``SLURM_NODELIST``; :func:`first_slurm_host` passes it as an argument.
- ``AmpOptimWrapper`` asserts an accelerator, so ``--amp`` fails on a CPU
  host: use :class:`~mmsaol.compat.amp.CPUAmpOptimWrapper` instead.
"""
from __future__ import annotations

import inspect
import logging
import os
import subprocess

import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from .config import DATALOADERS, replace_types

#: Norm types mmcv builds as ``torch.nn.SyncBatchNorm`` and their
#: per-process replacement: the one list of sync-norm config names.
SYNC_NORMS = {'SyncBN': 'BN', 'MMSyncBN': 'BN'}


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[01-04]`` -> ``node01``).

    mmengine 0.10.7 (``_init_dist_slurm``) runs the shell text
    ``scontrol show hostname <SLURM_NODELIST> | head -n1``, so a node list
    such as ``x; touch F`` runs a command. Here ``scontrol show hostnames``
    gets the list as one argument, without a shell. Where ``scontrol`` is
    not installed, a plain host name (no ``[...]`` range) is used as it is.

    Args:
        nodelist (str): The value of ``SLURM_NODELIST``.

    Returns:
        str: The first host name.
    """
    try:
        result = subprocess.run(['scontrol', 'show', 'hostnames', nodelist],
                                capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        first = nodelist.split(',')[0].strip()
        if first and '[' not in first:
            return first
        raise ValueError(
            f'SLURM_NODELIST={nodelist!r} is a host range, and Slurm\'s '
            'scontrol, which expands it, is not installed here; set '
            'MASTER_ADDR to the first host of the job.') from None
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise ValueError(
            f'scontrol show hostnames {nodelist!r} failed '
            f'({result.stderr.strip() or "no host names"}); set MASTER_ADDR '
            'to the first host of the job.')
    return hosts[0]


def _slurm_environment() -> None:
    """torchrun's variables from srun's, as mmengine's ``_init_dist_slurm``
    sets them, with the master host from :func:`first_slurm_host`."""
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID',
                           'SLURM_NODELIST') if k not in os.environ]
    if missing:
        raise ValueError(
            f'--launcher slurm needs the environment variables {missing} '
            'that srun sets; start the job with tools/slurm_train.sh, or '
            'use --launcher none.')
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = first_slurm_host(
            os.environ['SLURM_NODELIST'])


def _init_cpu_process_group(launcher: str) -> None:
    """Create the gloo process group from the launcher's environment."""
    if dist.is_initialized():
        return
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(
            f'--launcher {launcher} is not supported on a host without '
            "CUDA; use --launcher pytorch (tools/dist_train.sh) or slurm.")
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise ValueError(
            f'--launcher {launcher} needs the environment variables '
            f'{missing}; start the job with tools/dist_train.sh (torchrun) '
            'or tools/slurm_train.sh, or use --launcher none.')
    dist.init_process_group(backend='gloo')


def _no_forward_buffer_sync() -> dict:
    """DDP arguments for mmengine's default "no buffer sync in forward".

    torch 2.14 deprecates ``broadcast_buffers`` (FutureWarning) for
    ``forward_sync_buffers``; the latter still syncs buffers once when DDP
    is built, which is harmless here (every rank starts from the same seed
    or checkpoint). Older torch only knows ``broadcast_buffers``.
    """
    if 'forward_sync_buffers' in inspect.signature(
            DistributedDataParallel.__init__).parameters:
        return dict(forward_sync_buffers=False)
    return dict(broadcast_buffers=False)


def _model_wrapper(cfg: Config, cpu: bool) -> ConfigDict:
    """mmengine's default DDP wrapper, without ``device_ids`` on CPU."""
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # Runner.wrap_model's own default: no buffer sync in forward,
        # find_unused_parameters from the config.
        wrapper = ConfigDict(
            type='MMDistributedDataParallel',
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            **_no_forward_buffer_sync())
        if cpu:
            wrapper.device_ids = None
        return wrapper
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if cpu and isinstance(wrapper_type, type) and \
            issubclass(wrapper_type, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)
    return wrapper


def adapt_to_host(cfg: Config, amp: bool = False) -> Config:
    """Adjust a merged config to the host it runs on.

    - Any distributed run (``cfg.launcher`` not ``'none'``) without a
      ``model_wrapper_cfg``: mmengine's default wrapper, spelled with the
      DDP argument of the installed torch (no FutureWarning on torch 2.14).
    - ``--launcher slurm``: torchrun's variables from srun's (master host
      from :func:`first_slurm_host`, no shell), then mmengine's pytorch
      launcher (``cfg.launcher='pytorch'``).
    - Distributed run on a host without an accelerator
      (``mmengine.device.get_device()`` is ``'cpu'``): create the gloo
      process group, no ``device_ids`` for DDP, SyncBN becomes BN (torch's
      SyncBatchNorm has no CPU implementation).
    - Mixed precision (``--amp`` or ``optim_wrapper.type='AmpOptimWrapper'``)
      on such a host: :class:`CPUAmpOptimWrapper` (bfloat16 autocast, or
      ``optim_wrapper.dtype='float16'``), without loss scaling.
    - Data loaders on such a host: ``pin_memory=False`` (nothing to pin).

    Args:
        cfg (Config): the merged config (``cfg.launcher`` set).
        amp (bool): whether ``--amp`` was given.

    Returns:
        Config: the same config, changed in place.
    """
    cpu = get_device() == 'cpu'
    launcher = cfg.get('launcher', 'none')
    if launcher == 'slurm' and not dist.is_initialized():
        # mmengine 0.10.7's slurm init runs a shell command built from
        # SLURM_NODELIST. With torchrun's variables set from srun's, its
        # pytorch init does the same without it (set the device of
        # LOCAL_RANK, init_process_group); remove when mmengine stops
        # building that command.
        _slurm_environment()
        cfg.launcher = launcher = 'pytorch'
    if launcher != 'none':
        cfg.model_wrapper_cfg = _model_wrapper(cfg, cpu)
    if launcher != 'none' and cpu:
        _init_cpu_process_group(launcher)
        cfg.setdefault('env_cfg', ConfigDict()).setdefault(
            'dist_cfg', ConfigDict())
        cfg.env_cfg.dist_cfg['backend'] = 'gloo'
        replaced = replace_types(
            cfg.model, {sync: (bn, ()) for sync, bn in SYNC_NORMS.items()})
        if cfg.pop('sync_bn', None) is not None:
            replaced.append('sync_bn')
        if replaced:
            print_log(
                'SyncBN has no CPU implementation in torch: on this CPU host '
                'every SyncBN layer is a BN layer (statistics per process). '
                'Run on GPUs for synchronised statistics.',
                logger='current', level=logging.WARNING)
    if cpu:
        # mmpretrain 1.2.0's train/test tools default every data loader to
        # pin_memory=True; with no accelerator torch (>= 2.5) only warns
        # that pinning is skipped. Nothing to pin on a CPU host.
        for field in DATALOADERS:
            loader = cfg.get(field)
            if isinstance(loader, dict) and loader.get('pin_memory'):
                loader['pin_memory'] = False
    optim_wrapper = cfg.get('optim_wrapper')
    if cpu and optim_wrapper is not None and (
            amp or optim_wrapper.get('type') == 'AmpOptimWrapper'):
        optim_wrapper.type = 'CPUAmpOptimWrapper'
        optim_wrapper.pop('loss_scale', None)
        if optim_wrapper.get('dtype') is None:
            optim_wrapper.pop('dtype', None)
    return cfg
