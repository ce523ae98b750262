"""What SAOL costs: GAP-FC and the SAOL variants on the same backbone.

Logic of ``tools/benchmark.py``. For one backbone (from a config or a preset
name) it builds GAP-FC and five SAOL variants (plain, self-supervision mode
``'label'``, mode ``'self'``, self-distillation, mode ``'self'`` with
self-distillation) and measures, side by side in one process:

- parameters and multiply-accumulates of one inference forward (mmengine's
  ``FlopAnalyzer``, which counts one fused multiply-add as one "flop");
- training images/s of the full step ``model.train_step``: data
  preprocessor (normalisation, (Geometry)CutMix), forward, losses, backward
  and optimizer step, on synthetic uint8 batches (no data loading);
- inference images/s of ``model.test_step`` (preprocessor, forward,
  predictions);
- peak training memory: the bytes of the model state (parameters, buffers,
  optimizer state) plus the peak of the bytes torch allocates during one
  training step above what was allocated when it began. On CUDA the latter
  is ``torch.cuda.max_memory_allocated()``; on CPU, where torch keeps no
  such counter, the same quantity is summed from the memory events that
  ``torch.profiler.profile(profile_memory=True)`` records and
  ``export_chrome_trace`` writes out (one event per allocation and free,
  with its size). Neither counts the allocator's cache or non-tensor
  memory. What the profiler's C++ side prints about itself (kineto's trace
  points, its probe for a GPU) is filtered out of the output.

Every variant is warmed up first; the timings are repeated with the order of
the variants rotated each repeat (so slow drift of a shared machine hits all
variants alike), and the median is reported with ratios to GAP-FC. Images/s
are per second of wall time, or with ``--clock process`` per second of this
process's CPU time: on a CPU shared with other jobs (``--threads 1``) that
counts only the benchmark's own work, which keeps the ratios stable.
``--split`` adds an inference column timed as backbone + head apart (the
backbone is the same in every variant, so its noise cancels; see
:func:`_split_inference`); ``--breakdown`` a second table with the parts
of a training step timed apart (:meth:`Bench.train_parts`). The timings
use their own loop rather than ``torch.utils.benchmark.Timer``:
``Timer.timeit`` runs untimed warm-up steps inside every timing and sets
its own thread count, where this
benchmark warms each variant up once, interleaves the variants and feeds
every step a fresh batch.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import os
import os.path as osp
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import (
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Pattern,
    Sequence,
    Tuple,
)

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mmsaol  # noqa: F401  (registers components)
from mmsaol.apis.cli import user_errors_as_messages
from mmsaol.compat.amp import CPUAmpOptimWrapper
from mmsaol.compat.config import load_config, replace_types
from mmsaol.deploy import speed
from mmsaol.deploy.export import require_deploy
from mmsaol.deploy.graph import InferenceGraph
from mmsaol.model_configs import GEOMETRY_CUTMIX, gapfc_twin

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
#: --clock: wall time, or the CPU time of this process (on a CPU shared with
#: other jobs, with --threads 1, it counts only this benchmark's work).
CLOCKS = {'wall': time.perf_counter, 'process': time.process_time}
#: ``Device Type`` of the CPU in the profiler's memory events (c10's kCPU).
CPU_DEVICE_TYPE = 0
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
        train=not args.no_train)


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


def synthetic_batch(setup: Setup, generator: torch.Generator) -> dict:
    """A fresh batch as a data loader would give it: uint8 images on the
    host and DataSamples with a hard label."""
    images = torch.randint(0, 256, (setup.batch_size, 3, *setup.input_size),
                           dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, setup.num_classes, (setup.batch_size, ),
                           generator=generator)
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    return dict(inputs=images, data_samples=samples)


def _optim_wrapper(setup: Setup, model: nn.Module) -> OptimWrapper:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                weight_decay=1e-4)
    if not setup.amp:
        return OptimWrapper(optimizer=optimizer)
    if setup.device.startswith('cuda'):
        return AmpOptimWrapper(optimizer=optimizer, dtype=setup.amp_dtype)
    return CPUAmpOptimWrapper(optimizer=optimizer, dtype=setup.amp_dtype)


def _synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def _state_bytes(model: nn.Module, optim_wrapper: OptimWrapper) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    for state in optim_wrapper.optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


#: Lines the profiler's C++ side writes straight to the process's stdout and
#: stderr (past Python's ``sys.stderr``) that say nothing about the
#: measurement: kineto's trace points (``USDT:``), its probe for a GPU on a
#: host without one, and c10's note that frees of blocks allocated before
#: profiling are not counted (which is what a per-step peak wants).
PROFILER_NOISE = re.compile(
    r'^(USDT:|ERROR:.*gpuGetDeviceCount'
    r'|\[W.*Memory block of unknown size was allocated before)')


@contextmanager
def native_output_filtered(noise: Pattern[str]) -> Iterator[None]:
    """Run a block with file descriptors 1 and 2 (where C++ code writes)
    captured; afterwards copy back every captured line that ``noise`` does
    not match, to the stream it was written to."""
    streams = {1: sys.stdout, 2: sys.stderr}
    for stream in streams.values():
        stream.flush()
    saved = {fd: os.dup(fd) for fd in streams}
    captures = {fd: tempfile.TemporaryFile() for fd in streams}
    try:
        for fd, capture in captures.items():
            os.dup2(capture.fileno(), fd)
        yield
    finally:
        for fd, stream in streams.items():
            stream.flush()
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            capture = captures[fd]
            capture.seek(0)
            text = capture.read().decode(errors='replace')
            capture.close()
            kept = [line for line in text.splitlines(keepends=True)
                    if not noise.search(line)]
            if kept:
                stream.write(''.join(kept))
                stream.flush()


def _cpu_step_peak(step: Callable[[], object]) -> int:
    """Peak bytes allocated by torch on the CPU during ``step()`` above the
    bytes allocated when it began, from the memory events of
    ``torch.profiler`` (written by ``export_chrome_trace``)."""
    from torch.profiler import ProfilerActivity, profile
    with native_output_filtered(PROFILER_NOISE), \
            tempfile.TemporaryDirectory() as folder:
        with profile(activities=[ProfilerActivity.CPU],
                     profile_memory=True) as prof:
            step()
        path = osp.join(folder, 'trace.json')
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)['traceEvents']
    # Allocations (positive sizes) and frees (negative) in time order; the
    # sort is stable, so events at the same time keep the trace's order.
    sizes = [e['args']['Bytes'] for e in sorted(
        (e for e in events if e.get('name') == '[memory]'
         and e['args'].get('Device Type') == CPU_DEVICE_TYPE),
        key=lambda e: e['ts'])]
    current = peak = 0
    for nbytes in sizes:
        current += nbytes
        peak = max(peak, current)
    return peak


def _step_peak(device: str, step: Callable[[], object]) -> int:
    if not device.startswith('cuda'):
        return _cpu_step_peak(step)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


@dataclass
class VariantResult:
    """Measurements of one variant (throughputs are medians)."""

    name: str
    label: str
    params: int
    macs: int
    macs_not_counted: Dict[str, int]
    train_images_per_s: float = math.nan
    infer_images_per_s: float = math.nan
    train_runs: List[float] = field(default_factory=list)
    infer_runs: List[float] = field(default_factory=list)
    state_bytes: int = 0
    step_peak_bytes: int = 0
    parts_runs: List[Dict[str, float]] = field(default_factory=list)
    backbone_s_runs: List[float] = field(default_factory=list)
    head_s_runs: List[float] = field(default_factory=list)
    split_infer_images_per_s: float = math.nan

    @property
    def peak_memory_bytes(self) -> int:
        return self.state_bytes + self.step_peak_bytes


class Bench:
    """One variant: model, optimizer and timed steps."""

    def __init__(self, setup: Setup, name: str, channels: Sequence[int]):
        self.setup = setup
        self.name = name
        # Keep stdout for the table: no INFO lines from building.
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            self.model = MODELS.build(
                variant_model_config(setup, name, channels))
        finally:
            logger.setLevel(level)
        self.model.to(setup.device)
        self.optim_wrapper = _optim_wrapper(setup, self.model)
        self.generator = torch.Generator().manual_seed(setup.seed)

    def _amp_context(self):
        if not self.setup.amp:
            return nullcontext()
        return torch.autocast(self.setup.device.split(':')[0],
                              dtype=getattr(torch, self.setup.amp_dtype))

    def complexity(self) -> VariantResult:
        """Parameters and MACs of one image's inference forward."""
        self.model.eval()
        inputs = torch.randn(1, 3, *self.setup.input_size,
                             device=self.setup.device)
        with torch.no_grad():
            analyzer = FlopAnalyzer(self.model, (inputs, ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            macs = analyzer.total()
            skipped = dict(analyzer.unsupported_ops())
        return VariantResult(
            name=self.name, label=VARIANTS[self.name][0],
            params=sum(p.numel() for p in self.model.parameters()),
            macs=int(macs), macs_not_counted=skipped)

    def _batches(self, count: int) -> List[dict]:
        return [synthetic_batch(self.setup, self.generator)
                for _ in range(count)]

    def train(self, steps: int) -> float:
        """Images/s over ``steps`` full training steps."""
        batches = self._batches(steps)
        self.model.train()
        _synchronize(self.setup.device)
        start = CLOCKS[self.setup.clock]()
        for batch in batches:
            self.model.train_step(batch, self.optim_wrapper)
        _synchronize(self.setup.device)
        return steps * self.setup.batch_size / (
            CLOCKS[self.setup.clock]() - start)

    def train_parts(self, steps: int) -> Dict[str, float]:
        """Seconds per batch of each part of a training step, run as
        ``BaseModel.train_step`` runs it: ``preprocess`` (normalisation,
        batch augments), ``unmixed`` (mode ``'self'``: the no-grad forward
        of the un-mixed batch, ``SAOLClassifier.unmixed_outputs``),
        ``forward`` (the rest of the forward and the losses) and
        ``backward`` (loss parsing, backward, optimizer step)."""
        model = self.model
        model.train()
        clock = CLOCKS[self.setup.clock]
        sync = functools.partial(_synchronize, self.setup.device)
        parts = dict.fromkeys(STEP_PARTS, 0.0)
        unmixed_outputs = getattr(model, 'unmixed_outputs', None)

        def timed_unmixed(*args, **kwargs):
            start = clock()
            out = unmixed_outputs(*args, **kwargs)
            sync()
            parts['unmixed'] += clock() - start
            return out

        if unmixed_outputs is not None:
            # The real method, timed: an instance attribute shadows it for
            # the duration of these steps.
            model.unmixed_outputs = timed_unmixed
        try:
            for batch in self._batches(steps):
                sync()
                start = clock()
                with self.optim_wrapper.optim_context(model):
                    data = model.data_preprocessor(batch, True)
                    sync()
                    preprocessed = clock()
                    losses = model._run_forward(data, mode='loss')
                    sync()
                    forwarded = clock()
                parsed, _ = model.parse_losses(losses)
                self.optim_wrapper.update_params(parsed)
                sync()
                parts['preprocess'] += preprocessed - start
                parts['forward'] += forwarded - preprocessed
                parts['backward'] += clock() - forwarded
        finally:
            if unmixed_outputs is not None:
                del model.unmixed_outputs
        parts['forward'] -= parts['unmixed']
        return {part: total / steps for part, total in parts.items()}

    def infer(self, steps: int) -> float:
        """Images/s over ``steps`` inference steps."""
        batches = self._batches(steps)
        self.model.eval()
        _synchronize(self.setup.device)
        start = CLOCKS[self.setup.clock]()
        with torch.no_grad(), self._amp_context():
            for batch in batches:
                self.model.test_step(batch)
        _synchronize(self.setup.device)
        return steps * self.setup.batch_size / (
            CLOCKS[self.setup.clock]() - start)

    def infer_split(self, steps: int) -> Tuple[float, float]:
        """``(backbone, rest)`` seconds per batch of inference: the
        backbone forward, and everything after it (neck, head,
        predictions), timed apart on the same preprocessed batches."""
        model = self.model
        model.eval()
        clock = CLOCKS[self.setup.clock]
        backbone_s = rest_s = 0.0
        with torch.no_grad(), self._amp_context():
            for batch in self._batches(steps):
                data = model.data_preprocessor(batch, False)
                _synchronize(self.setup.device)
                start = clock()
                feats = model.backbone(data['inputs'])
                _synchronize(self.setup.device)
                middle = clock()
                if model.with_neck:
                    feats = model.neck(feats)
                model.head.predict(feats, data['data_samples'])
                _synchronize(self.setup.device)
                backbone_s += middle - start
                rest_s += clock() - middle
        return backbone_s / steps, rest_s / steps

    def memory(self) -> Tuple[int, int]:
        """``(state bytes, step peak bytes)`` of one training step (run
        after the warm-up, so the optimizer state exists)."""
        batch = self._batches(1)[0]
        self.model.train()
        peak = _step_peak(self.setup.device, lambda: self.model.train_step(
            batch, self.optim_wrapper))
        return _state_bytes(self.model, self.optim_wrapper), peak


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rotated(variants: List[str], repeat: int) -> List[str]:
    """The variants in the order of one repeat: rotated by one per repeat,
    so slow drift of a shared machine hits all variants alike."""
    shift = repeat % len(variants)
    return variants[shift:] + variants[:shift]


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
    benches: Dict[str, Bench] = {}
    results: Dict[str, VariantResult] = {}
    for name in setup.variants:
        benches[name] = Bench(setup, name, channels)
        results[name] = benches[name].complexity()
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
    for repeat in range(setup.repeats):
        order = _rotated(setup.variants, repeat)
        if setup.train:
            for name in order:
                results[name].train_runs.append(
                    benches[name].train(setup.iters))
        for name in order:
            results[name].infer_runs.append(benches[name].infer(setup.iters))
        _log(f'[benchmark] repeat {repeat + 1}/{setup.repeats}: ' + ', '.join(
            f'{n} ' + (f'{results[n].train_runs[-1]:.1f}'
                       if results[n].train_runs else '-')
            + f'/{results[n].infer_runs[-1]:.1f}' for n in order)
            + ' (train/inference images/s)')
    if setup.split:
        _split_inference(setup, benches, results)
    if setup.breakdown and setup.train:
        _step_breakdown(setup, benches, results)
    for result in results.values():
        if result.train_runs:
            result.train_images_per_s = statistics.median(result.train_runs)
        result.infer_images_per_s = statistics.median(result.infer_runs)
    return [results[name] for name in setup.variants]


def _split_inference(setup: Setup, benches: Dict[str, 'Bench'],
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
    for repeat in range(setup.repeats):
        for name in _rotated(setup.variants, repeat):
            backbone_s, head_s = benches[name].infer_split(setup.iters)
            results[name].backbone_s_runs.append(backbone_s)
            results[name].head_s_runs.append(head_s)
        _log(f'[benchmark] split repeat {repeat + 1}/{setup.repeats}: '
             + ', '.join(f'{n} {results[n].backbone_s_runs[-1] * 1e3:.1f}+'
                         f'{results[n].head_s_runs[-1] * 1e3:.2f}'
                         for n in setup.variants)
             + ' (backbone+rest ms/batch)')
    backbone_s = statistics.median(
        t for r in results.values() for t in r.backbone_s_runs)
    for result in results.values():
        result.split_infer_images_per_s = setup.batch_size / (
            backbone_s + statistics.median(result.head_s_runs))


#: The parts of a training step that ``--breakdown`` times apart.
STEP_PARTS = ('preprocess', 'unmixed', 'forward', 'backward')


def _step_breakdown(setup: Setup, benches: Dict[str, 'Bench'],
                    results: Dict[str, VariantResult]) -> None:
    """Time the parts of a training step (:meth:`Bench.train_parts`) per
    variant, rotated per repeat like the other timings."""
    for repeat in range(setup.repeats):
        for name in _rotated(setup.variants, repeat):
            results[name].parts_runs.append(
                benches[name].train_parts(setup.iters))
        _log(f'[benchmark] breakdown repeat {repeat + 1}/{setup.repeats} '
             'done')


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
    lines = ['| variant | ' + ' | '.join(f'{p} (ms)' for p in STEP_PARTS)
             + ' | step (ms) | un-mixed forward / step |',
             '|---|' + '---:|' * (len(STEP_PARTS) + 2)]
    for r in results:
        if not r.parts_runs:
            continue
        parts = step_parts(r)
        step = sum(parts.values())
        cells = [f'{parts[p] * 1e3:.1f}' for p in STEP_PARTS]
        share = parts['unmixed'] / step
        lines.append(f'| {r.label} | ' + ' | '.join(cells)
                     + f' | {step * 1e3:.1f} | {share:.3f} |')
    return '\n'.join(lines)


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


def markdown_table(results: Sequence[VariantResult]) -> str:
    """The results as a markdown table, each value with its ratio to
    GAP-FC."""
    rel = ratios(results)
    metrics = _metrics(results)
    lines = ['| variant | ' + ' | '.join(m[1] for m in metrics) + ' |',
             '|---|' + '---:|' * len(metrics)]
    for r in results:
        cells = [f'{getattr(r, key) * scale:{fmt}} '
                 f'({rel[r.name][key]:.3f})'
                 for key, _, scale, fmt in metrics]
        lines.append(f'| {r.label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


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
            timing=('median over repeats of images per second of the '
                    '`clock` (wall: elapsed time; process: CPU time of the '
                    'benchmark process) over `iters` steps, after `warmup` '
                    'steps; variant order rotated per repeat')),
        variants=[dict(asdict(r), peak_memory_bytes=r.peak_memory_bytes,
                       ratio_to_gapfc=ratios(results)[r.name],
                       step_parts_s=step_parts(r) if r.parts_runs else None)
                  for r in results])



def benchmark_onnx(setup: Setup) -> dict:
    """``tools/benchmark.py --onnx``: ONNX Runtime against PyTorch for the
    GAP-FC and SAOL models of a benchmark setup; prints the markdown table
    and returns the JSON-ready report.

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
        setup, torch.Generator().manual_seed(setup.seed))['inputs'].float()
    results = []
    for name, head in speed.SPEED_VARIANTS:
        if name not in setup.variants:
            continue
        graph = InferenceGraph(
            speed.build_variant(variant_model_config(setup, name, channels)),
            head=head)
        result = speed.SpeedResult(name=name, label=VARIANTS[name][0],
                             outputs=list(graph.output_names))
        print(f'[benchmark --onnx] {name}: exporting and timing '
              f'{setup.repeats} x {setup.iters} batches of '
              f'{setup.batch_size} per runtime', file=sys.stderr,
              flush=True)
        results.append(speed.compare_speed(graph, inputs, setup.warmup,
                                     setup.iters, setup.repeats,
                                     CLOCKS[setup.clock], result))
    if not results:
        raise ValueError('--onnx measures the variants gapfc and saol; add '
                         'them to --variants.')
    print(speed.markdown_table(results), flush=True)
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
                        '(CPU; see mmsaol.deploy.speed)')
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
        print(markdown_table(results), flush=True)
        if setup.breakdown:
            print('\n' + breakdown_table(results), flush=True)
        data = report(setup, results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(data, f, indent=2)
        _log(f"[benchmark{' --onnx' if args.onnx else ''}] wrote "
             f'{args.out}')
    return data
