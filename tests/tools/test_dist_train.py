"""Multi-process training: tools/dist_train.sh on CPU (gloo) and GPUs, DDP
safety of every SAOL branch, SyncBN."""
from __future__ import annotations

import copy
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS, MODEL_WRAPPERS
from mmpretrain.registry import DATASETS, MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmsaol.compat.runtime import adapt_to_host

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'saol_demo.py')
PER_RANK_BATCH = 8
STEPS = 3  # optimizer steps of the 2-process run


@HOOKS.register_module(force=True)
class RankStateDumpHook(Hook):
    """Test helper: every rank saves its own model state after training
    (mmengine's CheckpointHook saves on rank 0 only)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def after_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') \
            else runner.model
        rank = dist.get_rank() if dist.is_initialized() else 0
        torch.save({k: v.detach().cpu() for k, v in model.state_dict()
                    .items()}, osp.join(self.out_dir, f'rank{rank}.pth'))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(
                   [osp.dirname(__file__),
                    os.environ.get('PYTHONPATH', '')]))
    env.update(extra)
    return env


def _write_config(path: str, base: str = DEMO, **fields) -> str:
    """A config file inheriting ``base`` with ``fields`` merged in."""
    lines = [f'_base_ = [{base!r}]']
    lines += [f'{key} = {value!r}' for key, value in fields.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def _shrunk_demo(work_dir: str, indices) -> str:
    """The demo without batch augments (so a rank's batch is the same images
    with or without DDP) and so without self-supervision (it needs CutMix),
    distillation kept, a fixed data order, constant lr, no validation,
    exact per-iteration logging, and every rank dumping its weights."""
    return _write_config(
        osp.join(work_dir, 'config.py'),
        custom_imports=dict(imports=['mmsaol', 'test_dist_train'],
                            allow_failed_imports=False),
        custom_hooks=[dict(type='RankStateDumpHook', out_dir=work_dir)],
        data_preprocessor=dict(to_onehot=True),
        model=dict(train_cfg=None, head=dict(self_supervision=None)),
        train_dataloader=dict(
            batch_size=PER_RANK_BATCH, sampler=dict(shuffle=False),
            dataset=dict(copies=1, indices=list(indices))),
        param_scheduler=[],
        val_dataloader=None, val_cfg=None, val_evaluator=None,
        test_dataloader=None, test_cfg=None, test_evaluator=None,
        default_hooks=dict(checkpoint=dict(save_best=None),
                           logger=dict(interval=1)),
        log_processor=dict(window_size=1))


def _losses(work_dir: str) -> list:
    """Per-iteration logged losses (rank 0) from the json scalars log."""
    path, = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [row['loss'] for row in sorted(rows, key=lambda r: r['step'])
            if 'loss' in row]


FAKE_SRUN = r"""#!/usr/bin/env bash
# Stand-in for Slurm's srun (test double): records its options, then starts
# --ntasks copies of the command with the SLURM_* variables srun sets.
ntasks=1
opts=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -p) opts+=("$1" "$2"); shift 2 ;;
    --ntasks=*) ntasks=${1#*=}; opts+=("$1"); shift ;;
    -*) opts+=("$1"); shift ;;
    *) break ;;
  esac
done
printf '%s\n' "${opts[@]}" > "$SRUN_RECORD"
pids=()
for ((i = 0; i < ntasks; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks \
    SLURM_NODELIST=localhost "$@" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
exit $rc
"""


@pytest.fixture(scope='module')
def launched(tmp_path_factory):
    """Start every multi-process run of this module at once (they spend most
    of their time importing, so running them side by side keeps the module
    fast): 2-process dist_train.sh, the matching 1-process train.py,
    2-process dist_test.sh, and slurm_test.sh with 1 task (through a
    stand-in srun; the multi-process part is dist_test.sh's)."""
    root = tmp_path_factory.mktemp('launched')
    dirs = {name: str(root / name)
            for name in ('dist', 'single', 'test', 'slurm')}
    for path in dirs.values():
        os.makedirs(path)
    total = 2 * PER_RANK_BATCH * STEPS
    rank_order = [i for step in range(STEPS) for rank in range(2)
                  for i in range(2 * PER_RANK_BATCH * step + rank,
                                 2 * PER_RANK_BATCH * (step + 1), 2)]
    ckpt = str(root / 'demo.pth')
    torch.save(dict(state_dict=MODELS.build(
        Config.fromfile(DEMO).model).state_dict(), meta=dict()), ckpt)
    srun_dir = root / 'bin'
    srun_dir.mkdir()
    (srun_dir / 'srun').write_text(FAKE_SRUN)
    (srun_dir / 'srun').chmod(0o755)
    test_options = ['--cfg-options', 'test_dataloader.dataset.copies=1',
                    'test_dataloader.dataset.indices=32',
                    'test_dataloader.batch_size=8']
    commands = dict(
        # --cfg-options pass through the scripts to every rank.
        dist=(['bash', osp.join(REPO, 'tools', 'dist_train.sh'),
               _shrunk_demo(dirs['dist'], range(total)), '2',
               '--work-dir', dirs['dist'],
               '--cfg-options', 'train_cfg.max_epochs=1'],
              _env(PORT=str(_free_port()))),
        single=([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                 _shrunk_demo(dirs['single'], rank_order),
                 '--work-dir', dirs['single'],
                 '--cfg-options', 'train_cfg.max_epochs=1',
                 'optim_wrapper.accumulative_counts=2'],
                _env()),
        test=(['bash', osp.join(REPO, 'tools', 'dist_test.sh'), DEMO, ckpt,
               '2', '--work-dir', dirs['test'],
               '--out', osp.join(dirs['test'], 'metrics.json'),
               '--out-item', 'metrics', *test_options],
              _env(PORT=str(_free_port()))),
        slurm=(['bash', osp.join(REPO, 'tools', 'slurm_test.sh'), 'cpu',
                'saol', DEMO, ckpt, '--work-dir', dirs['slurm'],
                '--out', osp.join(dirs['slurm'], 'metrics.json'),
                '--out-item', 'metrics', *test_options],
               _env(GPUS='1', GPUS_PER_NODE='1', GRES='',
                    MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()),
                    SRUN_RECORD=osp.join(dirs['slurm'], 'srun.txt'),
                    PATH=f'{srun_dir}{os.pathsep}{os.environ["PATH"]}')))
    procs = {name: subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
        for name, (cmd, env) in commands.items()}
    outputs = {name: proc.communicate(timeout=500)[0]
               for name, proc in procs.items()}
    yield {name: (procs[name].returncode, outputs[name], dirs[name])
           for name in procs}


def _finished(launched: dict, name: str) -> str:
    """Work dir of a run of ``launched`` that must have succeeded."""
    returncode, output, work_dir = launched[name]
    assert returncode == 0, f'{name} run failed:\n{output[-4000:]}'
    return work_dir


def test_two_cpu_processes_match_one_process_same_global_batch(launched):
    """``dist_train.sh CONFIG 2`` on a CPU-only host trains with gloo, both
    ranks end with identical weights, and they match a 1-process run over
    the same global batch.

    Which 1-process run is "the same": each rank normalises with its own
    BatchNorm batch statistics (8 images), so a 1-process run with batch 16
    computes a different function. Instead the 1-process run uses gradient
    accumulation over two micro-batches of 8 that are exactly the ranks'
    batches (the DefaultSampler gives rank r the indices r, r+2, ...; the
    1-process data set lists them in that order). DDP averages the ranks'
    gradients, accumulation averages the micro-batches' gradients: the same
    update. No batch augments (their random permutation depends on the
    batch), same seed, no shuffle, constant lr. Then every rank-0 logged
    loss equals the loss of the matching micro-batch, and the weights after
    3 steps agree up to float rounding (here they are bitwise equal).
    """
    dist_dir = _finished(launched, 'dist')
    single_dir = _finished(launched, 'single')
    ranks = [torch.load(osp.join(dist_dir, f'rank{r}.pth')) for r in (0, 1)]
    single = torch.load(osp.join(single_dir, 'rank0.pth'))
    params = [name for name, _ in
              MODELS.build(Config.fromfile(DEMO).model).named_parameters()]
    assert params and set(params) <= set(ranks[0])
    for name in params:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], single[name],
                                   rtol=1e-4, atol=1e-5, msg=name)

    dist_losses, single_losses = _losses(dist_dir), _losses(single_dir)
    assert len(dist_losses) == STEPS and len(single_losses) == 2 * STEPS
    assert dist_losses[0] == pytest.approx(single_losses[0], abs=1e-5)
    assert dist_losses == pytest.approx(single_losses[::2], abs=1e-4)
    # The odd micro-batches are rank 1's: a different loss, so the
    # comparison above does pick out rank 0's batches.
    assert single_losses[1] != pytest.approx(single_losses[0], abs=1e-3)


@pytest.mark.parametrize('name', ['test', 'slurm'])
def test_two_cpu_processes_evaluate(launched, name):
    """``dist_test.sh CONFIG CHECKPOINT 2`` and ``slurm_test.sh`` evaluate
    with gloo on CPU; on CPU-only nodes ``GRES=`` drops the GPU request from
    srun."""
    work_dir = _finished(launched, name)
    with open(osp.join(work_dir, 'metrics.json')) as f:
        assert 'accuracy/top1' in json.load(f)
    if name == 'slurm':
        with open(osp.join(work_dir, 'srun.txt')) as f:
            options = f.read().split()
        assert '--ntasks=1' in options and 'cpu' in options
        assert not any(o.startswith('--gres') for o in options)


# ---------------------------------------------------------------- DDP safety
@pytest.fixture(scope='module')
def gloo_group():
    """A one-process gloo group: DDP's unused-parameter check runs exactly
    as with more processes, without launching any."""
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    dist.init_process_group('gloo', rank=0, world_size=1,
                            init_method=f'tcp://127.0.0.1:{_free_port()}')
    yield
    dist.destroy_process_group()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _demo_batches(count: int, batch_size: int = 4) -> list:
    dataset = DATASETS.build(dict(
        type='DigitsCanvas', split='train', copies=1,
        indices=count * batch_size,
        pipeline=[dict(type='PackInputs')]))
    return [pseudo_collate([dataset[i * batch_size + j]
                            for j in range(batch_size)])
            for i in range(count)]


def _ddp(model: nn.Module):
    """``model`` in the DDP wrapper that ``adapt_to_host`` configures for a
    CPU run, and an SGD optimizer wrapper."""
    cfg = adapt_to_host(Config(dict(launcher='pytorch', model=dict())))
    wrapped = MODEL_WRAPPERS.build(cfg.model_wrapper_cfg,
                                   default_args=dict(module=model))
    return wrapped, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))


def _demo_model_cfg(**head) -> dict:
    cfg = Config.fromfile(DEMO)
    model = copy.deepcopy(cfg.model.to_dict())
    model['data_preprocessor'] = cfg.data_preprocessor.to_dict()
    model['head'].update(head)
    model['train_cfg'] = dict(augments=[
        dict(type='GeometryCutMix', alpha=1.0),
        dict(type='Mixup', alpha=1.0)], probs=[0.5, 0.3])
    return model


#: batch augment per step (index into CutMix, Mixup, identity): every
#: transition between branches happens at least once.
BRANCHES = (0, 1, 2, 0, 2, 1, 0)


def _train_steps(head: dict, branches) -> nn.Module:
    """Build the demo model with ``head`` overrides, wrap it in DDP and run
    one training step per entry of ``branches`` with that batch augment
    forced. The location losses are exactly zero on Mixup / identity
    batches and run on CutMix ones (zero only for an empty box)."""
    np.random.seed(0)  # the batch augments draw from numpy
    torch.manual_seed(0)
    model = MODELS.build(_demo_model_cfg(**head))
    wrapped, optim = _ddp(model)
    augment = model.data_preprocessor.batch_augments
    model.train()
    spatial = []
    for branch, batch in zip(branches, _demo_batches(len(branches))):
        augment.probs = [float(branch == i) for i in range(3)]
        log_vars = wrapped.train_step(batch, optim)
        assert torch.isfinite(log_vars['loss'])
        spatial.append(float(log_vars['loss_spatial'].detach()))
    assert all(v == 0 for v, b in zip(spatial, branches) if b != 0)
    assert any(v > 0 for v, b in zip(spatial, branches) if b == 0)
    return model


def _tracked(module: nn.Module) -> dict:
    return {name: int(m.num_batches_tracked)
            for name, m in module.named_modules()
            if isinstance(m, _BatchNorm)}


@pytest.mark.parametrize('head', [
    dict(self_supervision=dict(target='self')),
    dict(self_supervision=dict(target='label')),
], ids=['self+distill', 'label+distill'])
def test_every_saol_branch_is_ddp_safe(gloo_group, one_thread, head):
    """No unused-parameter error under DDP (find_unused_parameters=False)
    whichever batch augment RandomBatchAugment picks, with the
    self-distillation branch on; and the un-mixed backbone forward of mode
    'self' leaves the backbone's BN running statistics alone under DDP."""
    model = _train_steps(head, BRANCHES)
    tracked = _tracked(model.backbone)
    assert tracked and set(tracked.values()) == {len(BRANCHES)}


def test_unmixed_forward_leaves_head_bn_statistics_alone(gloo_group,
                                                         one_thread):
    model = _train_steps(dict(self_supervision=dict(target='self')), (0, 2))
    assert set(_tracked(model.head).values()) == {2}


def test_ddp_check_catches_an_unused_parameter(gloo_group, one_thread):
    """Control for the test above: the same setting does fail for a model
    with a parameter that no loss uses."""
    model = MODELS.build(_demo_model_cfg())
    model.head.unused = nn.Linear(2, 2)
    wrapped, optim = _ddp(model)
    batches = _demo_batches(2)
    model.train()
    wrapped.train_step(batches[0], optim)
    with pytest.raises(RuntimeError, match='unused|finished reduction'):
        wrapped.train_step(batches[1], optim)


# -------------------------------------------------------------------- SyncBN
SYNC_BN = dict(type='SyncBN')


def test_syncbn_config_builds(one_thread):
    """A SyncBN config (backbone and head) builds, and trains after the
    conversion mmengine's Runner applies outside a distributed run."""
    from mmengine.model import revert_sync_batchnorm
    cfg = _demo_model_cfg(norm_cfg=SYNC_BN)
    cfg['backbone']['norm_cfg'] = SYNC_BN
    model = MODELS.build(cfg)
    syncs = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert syncs and any(m in syncs for m in model.head.modules())
    model = revert_sync_batchnorm(model)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    log_vars = model.train_step(_demo_batches(1)[0], optim)
    assert torch.isfinite(log_vars['loss'])


def test_torch_syncbn_refuses_cpu_in_a_process_group(gloo_group):
    """Why the CPU runs replace SyncBN by BN (mmsaol.compat.runtime): torch's
    SyncBatchNorm has no CPU implementation. When this starts failing, torch
    supports it and the replacement can go."""
    norm = nn.SyncBatchNorm(4).train()
    with pytest.raises(ValueError, match='SyncBatchNorm expected input'):
        norm(torch.randn(2, 4, 3, 3))


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason='SyncBN across processes needs 2 GPUs (torch '
                    'has no CPU SyncBatchNorm)')
def test_two_gpus_syncbn_self_supervision(tmp_path):
    """2 GPUs, NCCL, SyncBN on backbone and head, self-supervision mode
    'self' (its un-mixed forward synchronises batch statistics with
    track_running_stats off) with CutMix / Mixup / identity."""
    work_dir = str(tmp_path)
    config = _write_config(
        osp.join(work_dir, 'config.py'),
        model=dict(backbone=dict(norm_cfg=SYNC_BN),
                   head=dict(norm_cfg=SYNC_BN),
                   train_cfg=dict(_delete_=True, augments=[
                       dict(type='GeometryCutMix', alpha=1.0),
                       dict(type='Mixup', alpha=1.0)], probs=[0.5, 0.3])),
        train_dataloader=dict(batch_size=8,
                              dataset=dict(copies=1, indices=96)),
        train_cfg=dict(max_epochs=1),
        val_dataloader=dict(dataset=dict(indices=32)))
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, '2',
           '--work-dir', work_dir]
    proc = subprocess.run(cmd, env=_env(PORT=str(_free_port())), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert os.path.isfile(osp.join(work_dir, 'epoch_1.pth'))


class CountingSyncBN(nn.SyncBatchNorm):
    """Test stand-in for SyncBN on CPU: torch's SyncBatchNorm has no CPU
    kernel, so this one normalises with the rank's own statistics but, like
    the real one, issues a collective (an all-reduce) in every training
    forward, and counts them. Ranks that disagree on how many forwards they
    run would block each other, as with real SyncBN on GPUs."""

    collectives = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and dist.is_initialized():
            dist.all_reduce(torch.ones(1))
            type(self).collectives += 1
        return _BatchNorm.forward(self, x)


def _rank_worker(rank: int, port: int, branches: dict,
                 out_dir: str) -> None:
    """One rank of the two-process gloo runs (:func:`two_gloo_ranks`)."""
    from datetime import timedelta

    from mmengine.registry import MODELS as ENGINE_MODELS
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=2,
                            init_method=f'tcp://127.0.0.1:{port}',
                            timeout=timedelta(seconds=60))
    import mmsaol  # noqa: F401
    ENGINE_MODELS.register_module('CountingSyncBN', module=CountingSyncBN,
                                  force=True)
    np.random.seed(0)
    torch.manual_seed(0)
    norm = dict(type='CountingSyncBN')
    cfg = _demo_model_cfg(self_supervision=dict(target='self'),
                          norm_cfg=norm)
    cfg['backbone']['norm_cfg'] = norm
    model = MODELS.build(cfg)
    # No DDP wrapper: DDP refuses SyncBatchNorm modules on CPU, and the
    # collectives under test are the norms' own.
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    augment = model.data_preprocessor.batch_augments
    model.train()
    record = []
    for branch, batch in zip(branches[rank], _demo_batches(
            len(branches[rank]))):
        augment.probs = [float(branch == i) for i in range(3)]
        before = CountingSyncBN.collectives
        log_vars = model.train_step(batch, optim)
        record.append(dict(collectives=CountingSyncBN.collectives - before,
                           loss_spatial=float(log_vars['loss_spatial'])))
    with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(record, f)
    # Mode 'self' under MMDistributedDataParallel, CutMix, Mixup, CutMix:
    # _train_steps asserts the spatial loss is positive exactly on the
    # CutMix steps.
    model = _train_steps(dict(self_supervision=dict(target='self')),
                         (0, 1, 0))
    torch.save(model.state_dict(), osp.join(out_dir, f'rank{rank}.pth'))
    dist.destroy_process_group()


#: batch augment per step and rank of the SyncBN run of two_gloo_ranks.
RANK_BRANCHES = {0: [0, 2, 1, 0, 2], 1: [2, 0, 0, 1, 1]}


@pytest.fixture(scope='module')
def two_gloo_ranks(tmp_path_factory):
    """Two gloo processes (started once for the tests below): each trains
    the demo with synchronising norms on its own batch augments
    (:data:`RANK_BRANCHES`), then mode 'self' under DDP."""
    import torch.multiprocessing as mp
    out = tmp_path_factory.mktemp('gloo')
    mp.spawn(_rank_worker, nprocs=2,
             args=(_free_port(), RANK_BRANCHES, str(out)))
    return out


def test_syncbn_ranks_agree_on_the_unmixed_forward(two_gloo_ranks):
    """Two gloo ranks with synchronising norms draw different batch
    augments each step (rank 0 CutMix while rank 1 has Mixup or none, and
    back, then neither): mode 'self' runs its un-mixed forward on one rank
    only, so SAOLClassifier makes the other rank run it too. Both ranks must
    issue the same collectives every step (else real SyncBN hangs), and the
    location losses stay those of each rank's own batch."""
    branches = RANK_BRANCHES
    records = [json.load(open(two_gloo_ranks / f'rank{r}.json'))
               for r in (0, 1)]
    for step, (r0, r1) in enumerate(zip(*records)):
        assert r0['collectives'] == r1['collectives'], (step, records)
    # Steps 0-3 (some rank CutMixes) run the extra forward everywhere;
    # step 4 (no rank does) runs only the training forward.
    single = records[0][4]['collectives']
    assert single > 0
    assert all(r['collectives'] == 2 * single for r in records[0][:4])
    for rank in (0, 1):
        for record, branch in zip(records[rank], branches[rank]):
            assert (record['loss_spatial'] > 0) == (branch == 0), records


def test_two_processes_hand_the_geometry_through_ddp(two_gloo_ranks):
    """Mode 'self' in two gloo processes under MMDistributedDataParallel:
    its ``train_step`` hands the preprocessor's ``'mix'`` to the model's
    ``forward`` (the location losses run on CutMix steps, checked in the
    ranks), and the ranks end with the same weights."""
    ranks = [torch.load(two_gloo_ranks / f'rank{r}.pth') for r in (0, 1)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
