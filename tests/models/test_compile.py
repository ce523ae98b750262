"""``torch.compile`` on SAOL: mmengine's ``compile`` option trains SAOL
(self-supervision ``'self'`` and ``'label'``, with the distillation branch)
on a tiny PyramidNet with ShakeDrop, with the losses of eager training, and
the head and losses trace into one graph each.

Backends. TorchInductor compiles every fused kernel with the C++ compiler:
on a 2-core CI machine the first step of even this tiny model took minutes
(measured 524 s on a loaded machine), so the equality tests run mmengine's
``compile`` with ``backend='aot_eager'``: Dynamo captures the same graphs and
AOTAutograd builds the same joint forward/backward graphs as for Inductor,
only the final code generation is left out. One Inductor test compiles the
output layer (``log A``, ``log Y`` and ``log y``, forward and backward) on
CPU; the Runner test with Inductor runs where CUDA is available (Triton; the
GPU report) or with ``MMSAOL_INDUCTOR_TESTS=1``.

Graph breaks in a compiled ``train_step`` (mode ``'self'``, 12 with torch
2.14), none of them in the head, the losses or the backbone:

- mmsaol ``SAOLDataPreprocessor._check_labels`` (``int()`` of a label) and
  ``GeometryCutMix.mix`` (the box as Python ints), and
  ``frozen_norm_statistics`` of the un-mixed forward (an import inside a
  cached function; iterating ``model.modules()`` in a generator context
  manager): data-dependent Python on the data samples, the CutMix box, or
  the module tree, run once per step around the traced graphs.
- upstream: mmengine ``stack_batch`` (fake-tensor TypeError), mmpretrain
  ``RandomBatchAugment`` (``np.random.choice``), ``Mixup``/``CutMix``
  (``np.random.beta``, Python ints of the box), mmengine
  ``OptimWrapper.backward`` (Dynamo does not trace ``Tensor.backward``
  without compiled autograd) and ``torch.optim.Optimizer`` (an explicit
  ``torch._dynamo.graph_break()`` before the step).
"""
from __future__ import annotations

import copy
import logging
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from test_pyramidnet import CONFIGS, fake_data_config

from mmsaol.apis import benchmark
from mmsaol.models.heads.functional import (
    log_class_softmax,
    log_spatial_softmax,
    saol_log_output,
)
from mmsaol.structures import MixContext

#: A 3-block PyramidNet (one bottleneck per stage) with ShakeDrop, and a
#: narrow SAOL head on its three stages.
BACKBONE = dict(depth=11, alpha=12, shakedrop_prob=0.5)
HEAD = dict(in_channels=(80, 96, 112), channels=16)
LOSSES = ('loss_cls', 'loss_gapfc', 'loss_distill', 'loss_spatial')
#: Compiled and eager float32 runs of the same step differ only in the
#: order of floating-point operations (fused or re-ordered reductions):
#: rounding of order 1e-7 relative per operation; after the first step the
#: weights themselves differ by that much. 1e-4 relative bounds both.
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(autouse=True)
def quiet_logs():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
    torch._dynamo.reset()


def tiny_config(tmp_path, target: str, compile_cfg) -> Config:
    cfg = Config.fromfile(fake_data_config(tmp_path,
                                           'pyramidnet20_saol_cifar100'))
    cfg.model.backbone.update(BACKBONE)
    cfg.model.head.update(HEAD, self_supervision=dict(target=target))
    # CutMix on every batch, so that the location losses are not zeros.
    cfg.model.train_cfg = dict(augments=dict(type='GeometryCutMix',
                                             alpha=1.0))
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100,
                                        save_last=False)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(tmp_path / ('compiled' if compile_cfg else 'eager'))
    if compile_cfg:
        cfg.compile = compile_cfg
    return cfg


def runner_losses(cfg: Config) -> dict:
    """Every step's losses of one epoch (2 steps of 8) through mmengine's
    Runner, as its message hub records them."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    return {key: np.array(runner.message_hub.get_scalar(f'train/{key}')
                          .data[0]) for key in LOSSES}


@pytest.mark.parametrize('target,backend', [
    ('self', 'aot_eager'),
    ('label', 'aot_eager'),
    pytest.param('self', 'inductor', marks=pytest.mark.skipif(
        not (torch.cuda.is_available()
             or os.environ.get('MMSAOL_INDUCTOR_TESTS')),
        reason='Inductor training compiles for minutes on a CPU; set '
        'MMSAOL_INDUCTOR_TESTS=1 (runs on CUDA when available)')),
])
def test_compiled_training_has_the_losses_of_eager(tmp_path, target,
                                                   backend):
    """``compile=dict(backend=...)`` in the config: both steps' losses (the
    first from identical weights, the second after one compiled update)
    equal eager training's within RTOL (aot_eager: measured equal to the
    last bit). ShakeDrop draws its random numbers as eager does only with
    ``torch._inductor.config.fallback_random=True`` (which aot_eager also
    reads): otherwise the compiled graph draws other ones, and the losses
    differ from the first step on (measured up to 98% relative)."""
    eager = runner_losses(tiny_config(tmp_path, target, None))
    torch._inductor.config.fallback_random = True
    try:
        compiled = runner_losses(tiny_config(
            tmp_path, target, dict(backend=backend)))
    finally:
        torch._inductor.config.fallback_random = False
    for key in LOSSES:
        assert len(eager[key]) == 2, key
        assert np.isfinite(compiled[key]).all(), key
        np.testing.assert_allclose(compiled[key], eager[key], rtol=RTOL,
                                   atol=ATOL, err_msg=key)
    assert (eager['loss_spatial'] > 0).all()


# ---------------------------------------------------------------- explain
def tiny_model(**head) -> torch.nn.Module:
    cfg = Config.fromfile(osp.join(CONFIGS, 'pyramidnet20_saol_cifar100.py'))
    model = copy.deepcopy(cfg.model.to_dict())
    model['data_preprocessor'] = cfg.data_preprocessor.to_dict()
    model['backbone'].update(BACKBONE)
    model['head'].update(HEAD, **head)
    model['train_cfg'] = dict(augments=dict(type='GeometryCutMix',
                                            alpha=1.0))
    torch.manual_seed(0)
    built = MODELS.build(model)
    built.train()
    return built


def head_inputs(model, mixed: bool = True):
    """Stage maps, samples and the MixContext the classifier hands the head
    for one CutMix batch of 4 (or for a batch that was not mixed)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8,
                           generator=generator)
    samples = [DataSample().set_gt_label(i) for i in (3, 7, 3, 1)]
    np.random.seed(0)
    data = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples), True)
    geometry = data['mix'] if mixed else None
    unmixed = None
    if geometry is not None and model.head.needs_unmixed_batch:
        unmixed = model.unmixed_outputs(geometry.unmixed)
    return (model.extract_feat(data['inputs']), data['data_samples'],
            MixContext(geometry, unmixed))


@pytest.mark.parametrize('head,mixed', [
    (dict(self_supervision=dict(target='self'), label_mix='attention'),
     True),
    (dict(self_supervision=dict(target='label')), True),
    (dict(self_supervision=dict(target='self')), False),
], ids=['self-attention-labels', 'label', 'not-mixed'])
def test_head_loss_traces_without_graph_breaks(head, mixed):
    """``SAOLHead.loss`` with distillation and each self-supervision mode
    (CutMix batch, or a batch that was not mixed) is one graph."""
    model = tiny_model(**head)
    feats, samples, mix = head_inputs(model, mixed)
    explained = torch._dynamo.explain(model.head.loss)(feats, samples,
                                                       mix=mix)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_backbone_with_shakedrop_traces_without_graph_breaks():
    model = tiny_model()
    explained = torch._dynamo.explain(model.backbone)(
        torch.randn(2, 3, 32, 32))
    assert explained.graph_break_count == 0, explained.break_reasons


def test_inductor_compiles_the_output_layer():
    """TorchInductor (C++ on CPU) on SAOL's output layer, forward and
    backward: ``log y`` and the gradients equal eager's within float32
    rounding (a few operations: 1e-5)."""

    def output_layer(attention_logits, spatial_logits):
        return saol_log_output(log_spatial_softmax(attention_logits),
                               log_class_softmax(spatial_logits))

    generator = torch.Generator().manual_seed(0)
    args = [torch.randn(2, 1, 4, 4, generator=generator),
            torch.randn(2, 5, 4, 4, generator=generator)]
    results = []
    for fn in (output_layer, torch.compile(output_layer,
                                           backend='inductor')):
        leaves = [a.clone().requires_grad_() for a in args]
        out = fn(*leaves)
        (out * torch.arange(5.0)).sum().backward()
        results.append((out, *(leaf.grad for leaf in leaves)))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_benchmark_reports_compiled_against_eager_training(capsys):
    """``mmsaol benchmark --compile``: the same run times training with
    ``model.train_step`` compiled (Dynamo alone here, ``--compile-backend
    eager``: compiling fast enough for CPU tests) next to eager training,
    and reports their ratio per variant."""
    data = benchmark.main([
        osp.join(CONFIGS, 'saol_demo.py'), '--device', 'cpu', '--threads',
        '1', '--batch-size', '2', '--input-size', '40', '--iters', '1',
        '--repeats', '1', '--warmup', '1', '--variants', 'gapfc',
        'saol', '--compile', '--compile-backend', 'eager'])
    out = capsys.readouterr().out
    assert '| variant | train img/s eager | train img/s compiled | ' \
        'compiled / eager |' in out
    for variant in data['variants']:
        eager = variant['train_images_per_s']
        compiled = variant['compiled_train_images_per_s']
        assert eager > 0 and compiled > 0 and len(
            variant['compiled_train_runs']) == 1
        assert variant['compiled_over_eager'] == pytest.approx(
            compiled / eager)


def test_benchmark_compile_needs_training():
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--backbone', 'resnet18', '--compile',
                              '--no-train'])
