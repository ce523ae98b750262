"""What SAOL costs: GAP-FC and the SAOL variants on the same backbone.

The command line ``mmsaol benchmark`` (``tools/benchmark.py``). For one
backbone (from a config or a preset name) it builds GAP-FC and five SAOL
variants (plain, self-supervision mode ``'label'``, mode ``'self'``,
self-distillation, mode ``'self'`` with self-distillation) and compares, side
by side in one process: parameters and multiply-accumulates of one inference
forward, training images/s of the full ``model.train_step`` (preprocessor
with (Geometry)CutMix, forward, losses, backward, optimizer step) on
synthetic uint8 batches, inference images/s of ``model.test_step``, and
peak training memory. ``--split`` adds inference timed as backbone + head
apart, ``--breakdown`` the parts of a training step, ``--onnx`` ONNX Runtime
against PyTorch. The measurements themselves are
:mod:`mmsaol.apis.benchmark_measure`.

Every variant is warmed up first; the timings are repeated with the order of
the variants rotated each repeat (so slow drift of a shared machine hits all
variants alike), and the median is reported with ratios to GAP-FC.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import operator
import re
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import MODELS

import mmsaol  # noqa: F401  (registers components)
from mmsaol.apis.benchmark_measure import (
    CLOCKS,
    STEP_PARTS,
    ModelBench,
    OnnxResult,
    build_quietly,
    compare_onnx,
    interleaved,
    markdown_table,
    synthetic_batch,
    throughput,
)
from mmsaol.apis.cli import user_errors_as_messages
from mmsaol.apis.map_cost import MAP_COST_SOURCES, run_map_costs
from mmsaol.compat.amp import CPUAmpOptimWrapper
from mmsaol.compat.config import load_config, replace_types
from mmsaol.deploy.export import require_deploy
from mmsaol.deploy.graph import InferenceGraph
from mmsaol.engine import atomic_write
from mmsaol.model_configs import GEOMETRY_CUTMIX, gapfc_twin, maps_config

#: name -> (table label, SAOLHead overrides; None for the GAP-FC baseline).
VARIANTS: Dict[str, Tuple[str, Optional[dict]]] = {
    'gapfc': ('GAP-FC', None),
    'saol': ('SAOL', dict()),
    'saol_label': ("SAOL + self-sup. 'label'",
                   dict(self_supervision=dict(target='label'))),
    'saol_self': ("SAOL + self-sup. 'self'",
                  dict(self_supervision=dict(target='self'))),
    'saol_distill': ('SAOL + distillation', dict(distillation=dict())),
    'saol_all': ("SAOL + self-sup. 'self' + distillation",
                 dict(self_supervision=dict(target='self'),
                      distillation=dict())),
}
#: SAOLHead options that select a variant; taken out of a config's head.
VARIANT_KEYS = ('self_supervision', 'distillation', 'test_output',
                'with_maps')
SOFT_CE = dict(type='CrossEntropyLoss', loss_weight=1.0, use_soft=True)
DEFAULT_TRAIN_CFG = dict(augments=dict(type='CutMix', alpha=1.0))
IMAGENET_PREPROCESSOR = dict(mean=[123.675, 116.28, 103.53],
                             std=[58.395, 57.12, 57.375], to_rgb=True)
MEMORY_METRIC = (
    'model state (parameters, buffers, optimizer state) + peak bytes '
    'allocated by torch during one training step above the bytes allocated '
    'at its start ({how}); allocator cache and non-tensor memory excluded')


def backbone_preset(name: str) -> dict:
    """Backbone config of a preset name: ``resnet{18,34,50,101,152}``
    (mmpretrain ``ResNet``) or ``resnet{18,...}_cifar`` (``ResNet_CIFAR``),
    returning stages 2-4 (``out_indices=(1, 2, 3)``) for SAOL."""
    match = re.fullmatch(r'resnet(18|34|50|101|152)(_cifar)?', name)
    if match is None:
        raise ValueError(
            f'--backbone {name!r} is not a preset; use resnet18, resnet34, '
            'resnet50, resnet101, resnet152 (ImageNet stem) or the same with '
            "'_cifar' (CIFAR stem), or give a config file instead.")
    return dict(type='ResNet_CIFAR' if match.group(2) else 'ResNet',
                depth=int(match.group(1)), num_stages=4,
                out_indices=(1, 2, 3), style='pytorch')


def _saol_out_indices(backbone: dict) -> Tuple[int, ...]:
    """The stages SAOL reads: the config's when it lists several, else the
    last three of ``num_stages``."""
    given = backbone.get('out_indices')
    if isinstance(given, (list, tuple)) and len(given) > 1:
        return tuple(given)
    stages = backbone.get('num_stages', 4)
    return tuple(range(max(stages - 3, 0), stages))


@dataclass
class Setup:
    """What is benchmarked, and how."""

    source: str
    backbone: dict
    saol_head: dict
    preprocessor: dict
    train_cfg: dict
    classifier_kwargs: dict
    num_classes: int
    input_size: Tuple[int, int]
    batch_size: int
    device: str
    amp: bool
    amp_dtype: str
    warmup: int
    iters: int
    repeats: int
    variants: List[str]
    clock: str = 'wall'
    seed: int = 0
    split: bool = False
    breakdown: bool = False
    train: bool = True
    compile: bool = False
    compile_backend: str = 'inductor'


def _config_parts(path: str) -> dict:
    """Backbone, SAOL head options, data preprocessor, batch augments and
    classifier options of a SAOL (or GAP-FC) config."""
    cfg = load_config(path)
    model = cfg.model.to_dict()
    backbone = model['backbone']
    backbone.pop('init_cfg', None)  # no pretrained weights needed
    cfg_head = model.get('head') or {}
    head = {k: v for k, v in cfg_head.items() if k not in VARIANT_KEYS} \
        if cfg_head.get('type') == 'SAOLHead' else {}
    if 'loss' in cfg_head:
        head['loss'] = cfg_head['loss']
    preprocessor = model.get('data_preprocessor') or \
        cfg.get('data_preprocessor') or IMAGENET_PREPROCESSOR
    return dict(
        source=path, backbone=backbone, saol_head=head,
        preprocessor=dict(preprocessor),
        train_cfg=model.get('train_cfg') or DEFAULT_TRAIN_CFG,
        classifier_kwargs={k: model[k] for k in ('unmixed_norm', )
                           if k in model},
        num_classes=cfg_head.get('num_classes', 1000))


def _preset_parts(name: str) -> dict:
    return dict(source=f'--backbone {name}', backbone=backbone_preset(name),
                saol_head={}, preprocessor=dict(IMAGENET_PREPROCESSOR),
                train_cfg=DEFAULT_TRAIN_CFG, classifier_kwargs={},
                num_classes=1000)


def setup_from_args(args: argparse.Namespace) -> Setup:
    """Resolve the command line (config or preset) into a :class:`Setup`."""
    parts = _config_parts(args.config) if args.config \
        else _preset_parts(args.backbone)
    parts['backbone']['out_indices'] = _saol_out_indices(parts['backbone'])
    if args.num_classes is not None:
        parts['num_classes'] = args.num_classes
    head = parts['saol_head']
    if args.channels is not None:
        head['channels'] = args.channels
    head.pop('type', None)
    head['num_classes'] = parts['num_classes']
    head.setdefault('loss', SOFT_CE)
    preprocessor = parts['preprocessor']
    preprocessor.pop('type', None)
    preprocessor.pop('batch_augments', None)
    preprocessor['num_classes'] = parts['num_classes']

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError('--device cuda needs a CUDA device; use --device '
                         'cpu.')
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f'--variants: unknown {unknown}; choose from '
                         f'{list(VARIANTS)}.')
    if 'gapfc' not in args.variants:
        raise ValueError('--variants must include gapfc: ratios are to '
                         'GAP-FC.')
    if args.clock == 'process' and device.startswith('cuda'):
        raise ValueError('--clock process measures CPU work; use --clock '
                         'wall with --device cuda.')
    for name, value in (('--batch-size', args.batch_size),
                        ('--iters', args.iters),
                        ('--repeats', args.repeats)):
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}.')
    size = args.input_size
    return Setup(
        **parts, input_size=(size[0], size[-1]), batch_size=args.batch_size,
        device=device, amp=args.amp,
        amp_dtype=args.amp_dtype or ('float16' if device.startswith('cuda')
                                     else 'bfloat16'),
        warmup=args.warmup, iters=args.iters, repeats=args.repeats,
        variants=[v for v in VARIANTS if v in args.variants],
        clock=args.clock, seed=args.seed, split=args.split,
        breakdown=args.breakdown,
        train=not args.no_train, compile=args.compile,
        compile_backend=args.compile_backend)


def stage_channels(backbone: dict, input_size: Tuple[int, int]
                   ) -> Tuple[int, ...]:
    """Channels of the maps the backbone returns (one dummy forward)."""
    model = MODELS.build(copy.deepcopy(backbone))
    model.eval()  # mmpretrain backbones' train() returns None
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, *input_size))
    return tuple(int(f.shape[1]) for f in feats)


def variant_model_config(setup: Setup, name: str,
                         channels: Sequence[int]) -> dict:
    """The classifier config of one variant; all share the backbone.

    A SAOL variant reads every CutMix of the batch augments as
    ``GeometryCutMix``; GAP-FC is the GAP-FC twin of plain SAOL
    (:func:`~mmsaol.model_configs.gapfc_twin`: the last stage, mmpretrain's
    own preprocessor and CutMix).
    """
    overrides = VARIANTS[name][1]
    if overrides is None:
        return gapfc_twin(variant_model_config(setup, 'saol', channels))
    head = dict(copy.deepcopy(setup.saol_head), type='SAOLHead',
                **copy.deepcopy(overrides))
    head.setdefault('in_channels', tuple(channels))
    train_cfg = copy.deepcopy(setup.train_cfg)
    replace_types(train_cfg, GEOMETRY_CUTMIX)
    return dict(type='SAOLClassifier',
                backbone=copy.deepcopy(setup.backbone), neck=None,
                head=head,
                data_preprocessor=dict(copy.deepcopy(setup.preprocessor),
                                       type='SAOLDataPreprocessor'),
                train_cfg=train_cfg, **setup.classifier_kwargs)


def _optim_wrapper(setup: Setup, model: nn.Module) -> OptimWrapper:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                weight_decay=1e-4)
    if not setup.amp:
        return OptimWrapper(optimizer=optimizer)
    if setup.device.startswith('cuda'):
        return AmpOptimWrapper(optimizer=optimizer, dtype=setup.amp_dtype)
    return CPUAmpOptimWrapper(optimizer=optimizer, dtype=setup.amp_dtype)


@dataclass
class VariantResult:
    """Measurements of one variant (throughputs are medians; a relative
    IQR is the interquartile range of the seconds per batch over the
    repeats divided by their median)."""

    name: str
    label: str
    params: int
    macs: int
    macs_not_counted: Dict[str, int]
    train_images_per_s: float = math.nan
    infer_images_per_s: float = math.nan
    train_relative_iqr: float = math.nan
    infer_relative_iqr: float = math.nan
    train_runs: List[float] = field(default_factory=list)
    infer_runs: List[float] = field(default_factory=list)
    state_bytes: int = 0
    step_peak_bytes: int = 0
    parts_runs: List[Dict[str, float]] = field(default_factory=list)
    backbone_s_runs: List[float] = field(default_factory=list)
    head_s_runs: List[float] = field(default_factory=list)
    split_infer_images_per_s: float = math.nan
    compiled_train_images_per_s: float = math.nan
    compiled_train_runs: List[float] = field(default_factory=list)

    @property
    def peak_memory_bytes(self) -> int:
        return self.state_bytes + self.step_peak_bytes


def build_bench(setup: Setup, name: str,
                channels: Sequence[int]) -> ModelBench:
    """The measured model of one variant, with its optimizer."""
    model = build_quietly(variant_model_config(setup, name, channels))
    model.to(setup.device)
    return ModelBench(
        model, _optim_wrapper(setup, model), setup.batch_size,
        setup.input_size, setup.num_classes, setup.device, setup.clock,
        amp_dtype=setup.amp_dtype if setup.amp else None, seed=setup.seed)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interleaved(setup: Setup, benches: Dict[str, ModelBench],
                 measure: Callable[[ModelBench], object], what: str
                 ) -> Dict[str, list]:
    """``measure(bench)`` of every variant per repeat, in rotated order."""
    return interleaved(
        {name: functools.partial(measure, benches[name])
         for name in setup.variants}, setup.repeats,
        lambda repeat: _log(f'[benchmark] {what} repeat {repeat + 1}/'
                            f'{setup.repeats} done'))


def run_benchmark(setup: Setup) -> List[VariantResult]:
    """Measure every variant of ``setup`` side by side."""
    torch.manual_seed(setup.seed)
    if setup.device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True  # fixed shapes
    channels = stage_channels(setup.backbone, setup.input_size)
    _log(f'[benchmark] {setup.source}: stage channels {channels}, input '
         f'{setup.input_size[0]}x{setup.input_size[1]}, batch '
         f'{setup.batch_size}, device {setup.device}, amp {setup.amp}'
         + (f' ({setup.amp_dtype})' if setup.amp else '')
         + f', {torch.get_num_threads()} threads, {setup.clock} clock')
    benches: Dict[str, ModelBench] = {}
    results: Dict[str, VariantResult] = {}
    for name in setup.variants:
        benches[name] = build_bench(setup, name, channels)
        results[name] = VariantResult(name, VARIANTS[name][0],
                                      *benches[name].complexity())
        _log(f'[benchmark] built {name}: {results[name].params / 1e6:.3f} M '
             f'params, {results[name].macs / 1e9:.4f} G MACs')
    for name, bench in benches.items():
        if setup.warmup:
            if setup.train:
                bench.train(setup.warmup)
            bench.infer(setup.warmup)
        if setup.train:
            results[name].state_bytes, results[name].step_peak_bytes = \
                bench.memory()
            _log(f'[benchmark] warmed up {name}; peak training memory '
                 f'{results[name].peak_memory_bytes / 2**20:.1f} MiB')
    kinds = (('train', 'infer') if setup.train else ('infer', ))
    for kind in kinds:
        runs = _interleaved(
            setup, benches, operator.methodcaller(kind, setup.iters), kind)
        for name, result in results.items():
            for key, value in zip(('runs', 'images_per_s', 'relative_iqr'),
                                  throughput(runs[name], setup.batch_size)):
                setattr(result, f'{kind}_{key}', value)
    if setup.split:
        _split_inference(setup, benches, results)
    if setup.breakdown and setup.train:
        parts = _interleaved(setup, benches,
                             lambda b: b.train_parts(setup.iters),
                             'breakdown')
        for name, result in results.items():
            result.parts_runs = parts[name]
    if setup.compile and setup.train:
        _compiled_training(setup, channels, results)
    return [results[name] for name in setup.variants]


#: Warm-up steps of a compiled variant at least: the first compiles, the
#: second may recompile once (Dynamo then marks the changed sizes dynamic).
COMPILE_WARMUP = 5


def _compiled_training(setup: Setup, channels: Sequence[int],
                       results: Dict[str, VariantResult]) -> None:
    """Training images/s of every variant with ``model.train_step``
    compiled as mmengine's ``compile`` option compiles it
    (``torch.compile`` of the bound method; ``setup.compile_backend``),
    after warm-up steps that compile, timed by the same loop as eager
    training."""
    benches = {}
    for name in setup.variants:
        bench = build_bench(setup, name, channels)
        bench.model.train_step = torch.compile(
            bench.model.train_step, backend=setup.compile_backend)
        bench.train(max(setup.warmup, COMPILE_WARMUP))
        benches[name] = bench
        _log(f'[benchmark] compiled {name} ({setup.compile_backend})')
    runs = _interleaved(setup, benches,
                        operator.methodcaller('train', setup.iters),
                        'compiled train')
    for name, result in results.items():
        result.compiled_train_runs, result.compiled_train_images_per_s, \
            _ = throughput(runs[name], setup.batch_size)


def compile_table(results: Sequence[VariantResult]) -> str:
    """Eager against compiled training images/s of every variant, as a
    markdown table."""
    return markdown_table(
        ['variant', 'train img/s eager', 'train img/s compiled',
         'compiled / eager'],
        [[r.label, f'{r.train_images_per_s:.1f}',
          f'{r.compiled_train_images_per_s:.1f}',
          f'{r.compiled_train_images_per_s / r.train_images_per_s:.3f}']
         for r in results])


def _split_inference(setup: Setup, benches: Dict[str, ModelBench],
                     results: Dict[str, VariantResult]) -> None:
    """Inference images/s from the backbone and the head timed apart.

    Every variant runs the same backbone, so a shared machine's noise in
    the backbone time (most of the step) swamps a head that costs a few
    percent. Here each repeat times, per variant in rotated order, the
    backbone and the rest (neck, head, predictions) of ``iters`` batches;
    the backbone time is the median over all variants and repeats, each
    variant's rest time its own median, and
    ``split_infer_images_per_s = batch / (backbone + rest)``.
    """
    runs = _interleaved(setup, benches,
                        lambda b: b.infer_split(setup.iters), 'split')
    for name, result in results.items():
        result.backbone_s_runs = [b.mean for b, _ in runs[name]]
        result.head_s_runs = [h.mean for _, h in runs[name]]
    backbone_s = statistics.median(
        t for result in results.values() for t in result.backbone_s_runs)
    for result in results.values():
        result.split_infer_images_per_s = setup.batch_size / (
            backbone_s + statistics.median(result.head_s_runs))


def step_parts(result: VariantResult) -> Dict[str, float]:
    """Median seconds per batch of every part of a training step."""
    return {part: statistics.median(run[part] for run in result.parts_runs)
            for part in STEP_PARTS}


def breakdown_table(results: Sequence[VariantResult]) -> str:
    """Milliseconds per batch of each part of a training step, and the
    share of the step taken by the un-mixed forward (mode ``'self'``).

    A variant whose extra cost is exactly that no-grad forward trains at
    ``1 - share`` of its speed without it; the last column measures the
    share rather than assuming it.
    """
    rows = []
    for r in results:
        if not r.parts_runs:
            continue
        parts = step_parts(r)
        step = sum(parts.values())
        rows.append([r.label] + [f'{parts[p] * 1e3:.1f}' for p in STEP_PARTS]
                    + [f'{step * 1e3:.1f}', f"{parts['unmixed'] / step:.3f}"])
    return markdown_table(
        ['variant'] + [f'{p} (ms)' for p in STEP_PARTS]
        + ['step (ms)', 'un-mixed forward / step'], rows)


METRICS = (  # (key, column title, scale, format)
    ('params', 'params (M)', 1e-6, '.3f'),
    ('macs', 'MACs (G)', 1e-9, '.4f'),
    ('train_images_per_s', 'train images/s', 1.0, '.2f'),
    ('infer_images_per_s', 'inference images/s', 1.0, '.2f'),
    ('peak_memory_bytes', 'train peak memory (MiB)', 2**-20, '.1f'),
)


TRAIN_METRIC_KEYS = ('train_images_per_s', 'peak_memory_bytes')
SPLIT_METRIC = ('split_infer_images_per_s', 'inference images/s (split)',
                1.0, '.2f')


def _metrics(results: Sequence[VariantResult]) -> tuple:
    """The table's columns: the split inference column only when it was
    measured, the training ones only when training was."""
    metrics = METRICS
    if not all(math.isnan(r.split_infer_images_per_s) for r in results):
        metrics = METRICS[:4] + (SPLIT_METRIC, ) + METRICS[4:]
    if all(math.isnan(r.train_images_per_s) for r in results):
        metrics = tuple(m for m in metrics
                        if m[0] not in TRAIN_METRIC_KEYS)
    return metrics


def ratios(results: Sequence[VariantResult]) -> Dict[str, Dict[str, float]]:
    """Every metric of every variant divided by GAP-FC's."""
    base = next(r for r in results if r.name == 'gapfc')
    return {r.name: {key: getattr(r, key) / getattr(base, key)
                     for key, *_ in _metrics(results)}
            for r in results}


def results_table(results: Sequence[VariantResult]) -> str:
    """The results as a markdown table, each value with its ratio to
    GAP-FC."""
    rel = ratios(results)
    metrics = _metrics(results)
    return markdown_table(
        ['variant'] + [m[1] for m in metrics],
        [[r.label] + [f'{getattr(r, key) * scale:{fmt}} '
                      f'({rel[r.name][key]:.3f})'
                      for key, _, scale, fmt in metrics]
         for r in results])


def report(setup: Setup, results: Sequence[VariantResult]) -> dict:
    """Everything measured, JSON-ready."""
    device = setup.device
    how = ('torch.cuda.max_memory_allocated' if device.startswith('cuda')
           else 'torch.profiler memory events')
    return dict(
        setup=dict(
            {k: v for k, v in asdict(setup).items()},
            device_name=(torch.cuda.get_device_name(device)
                         if device.startswith('cuda') else 'cpu'),
            threads=torch.get_num_threads(), torch=torch.__version__,
            memory_metric=MEMORY_METRIC.format(how=how),
            timing=('batch size over the median over repeats of the '
                    'seconds per step of the `clock` (wall: elapsed time; '
                    'process: CPU time of the benchmark process) over '
                    '`iters` steps, after `warmup` steps; variant order '
                    'rotated per repeat; relative IQR: interquartile range '
                    'over median of those seconds')),
        variants=[dict(asdict(r), peak_memory_bytes=r.peak_memory_bytes,
                       ratio_to_gapfc=ratios(results)[r.name],
                       compiled_over_eager=(r.compiled_train_images_per_s
                                            / r.train_images_per_s),
                       step_parts_s=step_parts(r) if r.parts_runs else None)
                  for r in results])


#: Variants with an inference graph of their own (the other SAOL variants
#: differ only in training) and the output each deploys with.
ONNX_VARIANTS = (('gapfc', 'gapfc'), ('saol', None))


def onnx_table(results: Sequence[OnnxResult]) -> str:
    """Images/s of both runtimes (ratios to GAP-FC in the same runtime),
    ONNX Runtime over PyTorch, and the largest output difference."""
    base = next((r for r in results if r.name == 'gapfc'), results[0])
    return markdown_table(
        ['variant', 'outputs', 'PyTorch images/s', 'ONNX Runtime images/s',
         'ONNX Runtime / PyTorch', 'max abs diff'],
        [[r.label, ', '.join(r.outputs),
          f'{r.torch_images_per_s:.2f} '
          f'({r.torch_images_per_s / base.torch_images_per_s:.3f})',
          f'{r.onnx_images_per_s:.2f} '
          f'({r.onnx_images_per_s / base.onnx_images_per_s:.3f})',
          f'**{r.speedup:.2f}x**',
          f"{max(r.max_abs_diff.values(), default=float('nan')):.1e}"]
         for r in results], left=2)


def benchmark_onnx(setup: Setup) -> dict:
    """``--onnx``: for the GAP-FC and SAOL models of a setup, the
    :class:`InferenceGraph` (normalisation, backbone, head; SAOL with its
    attention and class maps, GAP-FC with probabilities alone, as each is
    deployed) in PyTorch and in ONNX Runtime
    (:func:`~mmsaol.apis.benchmark_measure.compare_onnx`); prints the
    markdown table and returns the JSON-ready report.

    Args:
        setup (Setup): Backbone, head, preprocessor, input
            size, batch size, warm-up, iterations, repeats, clock, seed.
    """
    ort = require_deploy('onnxruntime')
    if not setup.device.startswith('cpu'):
        raise ValueError('--onnx compares CPU inference: use --device cpu.')
    if setup.amp:
        raise ValueError('--onnx exports float32 graphs: leave out --amp.')
    torch.manual_seed(setup.seed)
    channels = stage_channels(setup.backbone, setup.input_size)
    inputs = synthetic_batch(
        setup.batch_size, setup.input_size, setup.num_classes,
        torch.Generator().manual_seed(setup.seed))['inputs'].float()
    results = []
    for name, head in ONNX_VARIANTS:
        if name not in setup.variants:
            continue
        cfg = maps_config(Config(dict(
            model=variant_model_config(setup, name, channels))))
        graph = InferenceGraph(build_quietly(cfg.model).eval(), head=head)
        _log(f'[benchmark --onnx] {name}: exporting and timing '
             f'{setup.repeats} x {setup.iters} batches of '
             f'{setup.batch_size} per runtime')
        results.append(compare_onnx(
            graph, inputs, setup.warmup, setup.iters, setup.repeats,
            setup.clock, OnnxResult(name=name, label=VARIANTS[name][0],
                                    outputs=list(graph.output_names))))
    if not results:
        raise ValueError('--onnx measures the variants gapfc and saol; add '
                         'them to --variants.')
    print(onnx_table(results), flush=True)
    return dict(
        setup=dict(asdict(setup), threads=torch.get_num_threads(),
                   torch=torch.__version__, onnxruntime=ort.__version__,
                   timing=('median over repeats of images per second of '
                           'the `clock` over `iters` batches, after '
                           '`warmup` batches; PyTorch eager (no_grad) and '
                           'ONNX Runtime (CPU, as many intra-op threads) '
                           'alternate per repeat')),
        onnx=[dict(asdict(r), speedup=r.speedup) for r in results])


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``mmsaol benchmark``."""
    parser = argparse.ArgumentParser(
        description='Cost of SAOL and its options against GAP-FC on the '
        'same backbone: parameters, MACs, training and inference images/s, '
        'peak training memory.')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('config', nargs='?', help='a SAOL (or GAP-FC) '
                        'config: its backbone, head options, data '
                        'preprocessor and batch augments are used')
    source.add_argument('--backbone', help='a preset instead of a config: '
                        'resnet18/34/50/101/152, optionally with _cifar')
    parser.add_argument('--input-size', type=int, nargs='+', default=[224],
                        metavar='S', help='input side, or height width '
                        '(default 224)')
    parser.add_argument('--num-classes', type=int, default=None,
                        help="number of classes (default: the config's, "
                        'or 1000)')
    parser.add_argument('--channels', type=int, default=None,
                        help="SAOLHead.channels (default: the config's, or "
                        "the head's default)")
    parser.add_argument('--batch-size', type=int, default=32)
    timing = parser.add_argument_group(
        'timing', 'how many steps are timed (every variant alike)')
    timing.add_argument('--warmup', type=int, default=2,
                        help='untimed steps per variant first (default 2)')
    timing.add_argument('--iters', type=int, default=10,
                        help='steps per timing (default 10)')
    timing.add_argument('--repeats', type=int, default=3,
                        help='timings per variant; the median is reported '
                        '(default 3)')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (AmpOptimWrapper on CUDA, '
                        'CPUAmpOptimWrapper on CPU) for training and '
                        'inference')
    parser.add_argument('--amp-dtype', choices=('float16', 'bfloat16'),
                        default=None, help='autocast dtype (default: '
                        'float16 on CUDA, bfloat16 on CPU)')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        help=f'subset of {list(VARIANTS)} (gapfc required)')
    parser.add_argument('--clock', choices=tuple(CLOCKS), default='wall',
                        help='time images/s by the wall clock (default) or '
                        'by the CPU time of this process (stable on a CPU '
                        'shared with other jobs; use with --threads 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice; '
                        'use 1 on a machine shared with other jobs)')
    parser.add_argument('--split', action='store_true',
                        help='also time inference as backbone + head '
                        'measured apart (the backbone is shared by all '
                        'variants; see the docs of _split_inference): '
                        'resolves a head of a few percent on a noisy '
                        'machine')
    parser.add_argument('--breakdown', action='store_true',
                        help='also time the parts of a training step apart '
                        '(preprocess, the un-mixed no-grad forward of mode '
                        "'self', the rest of the forward, backward + "
                        'optimizer step) and print them as a second table')
    parser.add_argument('--no-train', action='store_true',
                        help='inference only: skip the training throughput '
                        'and memory (their columns are left out)')
    parser.add_argument('--onnx', action='store_true',
                        help='instead: ONNX Runtime against PyTorch '
                        'inference images/s of the GAP-FC and SAOL graphs '
                        '(CPU; see mmsaol.apis.benchmark_measure)')
    parser.add_argument('--compile', action='store_true',
                        help='also time training with model.train_step '
                        "compiled by torch.compile (as mmengine's "
                        'compile=True does) and print compiled / eager '
                        'per variant')
    parser.add_argument('--compile-backend', default='inductor',
                        help='torch.compile backend of --compile (default '
                        'inductor)')
    parser.add_argument(
        '--maps', nargs='*', choices=MAP_COST_SOURCES, default=None,
        metavar='SOURCE',
        help='also time producing maps on the SAOL model and its GAP-FC '
        f'twin: images/s of each map source ({", ".join(MAP_COST_SOURCES)}'
        '; default all), the predicted class\'s map, as ratios to the plain '
        'forward (fp32; see mmsaol.apis.map_cost)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None,
                        help='write the results as JSON to this file')
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.input_size) not in (1, 2):
        parser.error('--input-size takes one or two numbers')
    if args.breakdown and (args.no_train or args.onnx):
        parser.error('--breakdown times the parts of a training step; it '
                     'cannot go with --no-train or --onnx')
    if args.compile and (args.no_train or args.onnx):
        parser.error('--compile times training steps; it cannot go with '
                     '--no-train or --onnx')
    return args


@user_errors_as_messages
def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Print the markdown table (of :func:`run_benchmark`, or with
    ``--onnx`` of :func:`benchmark_onnx`), optionally write the JSON
    report; returns the report."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    setup = setup_from_args(args)
    if args.onnx:
        data = benchmark_onnx(setup)
    else:
        results = run_benchmark(setup)
        print(results_table(results), flush=True)
        if setup.breakdown:
            print('\n' + breakdown_table(results), flush=True)
        if setup.compile:
            print('\n' + compile_table(results), flush=True)
        data = report(setup, results)
        if args.maps is not None:
            maps = run_map_costs(
                variant_model_config(setup, 'saol', stage_channels(
                    setup.backbone, setup.input_size)),
                args.maps or MAP_COST_SOURCES, setup.batch_size,
                setup.input_size, setup.device, setup.warmup, setup.iters,
                setup.repeats, setup.clock, setup.seed)
            print('\n' + maps.pop('table'), flush=True)
            data['maps'] = maps
    if args.out:  # never a half-written record (a kill, a full disk)
        atomic_write(json.dumps(data, indent=2), args.out)
        _log(f"[benchmark{' --onnx' if args.onnx else ''}] wrote "
             f'{args.out}')
    return data
