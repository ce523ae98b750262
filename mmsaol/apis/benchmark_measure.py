"""The measurements behind ``mmsaol benchmark``: time, memory, complexity.

:func:`measure` is the one timing loop (a step called ``number`` times, a
``torch.utils.benchmark.Measurement`` back). A stateless step (inference, an
exported graph, a backbone alone) is timed by ``torch.utils.benchmark.Timer``
(its clock synchronises the accelerator; the thread count is kept); a
training step by our own loop, since ``Timer.timeit`` adds untimed calls,
which would be extra optimizer steps on extra batches. :func:`interleaved`
repeats several steps in rotated order; :func:`throughput` takes median and
IQR of the repeats from ``Measurement.merge``. Peak memory on the CPU is our
own (:func:`step_peak_bytes`): torch keeps no CPU peak counter, so the memory
events of ``torch.profiler`` are summed. :class:`ModelBench` measures one
classifier, :func:`compare_onnx` one graph in PyTorch and ONNX Runtime, and
:func:`markdown_table` renders every table.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import os.path as osp
import re
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import (
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Pattern,
    Sequence,
    Tuple,
    TypeVar,
)

import numpy as np
import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.utils.benchmark import Measurement, Timer
from torch.utils.benchmark.utils.common import TaskSpec
from torch.utils.benchmark.utils.timer import timer as synchronized_clock

from mmsaol.deploy.export import export_graph, graph_metadata
from mmsaol.deploy.graph import InferenceGraph
from mmsaol.deploy.runtime import OnnxClassifier

#: ``--clock``: wall time (torch's benchmark clock, which synchronises the
#: accelerator before reading ``timeit.default_timer``), or the CPU time of
#: this process (on a CPU shared with other jobs, with one thread, it counts
#: only this benchmark's work).
CLOCKS: Dict[str, Callable[[], float]] = {
    'wall': synchronized_clock, 'process': time.process_time}
#: ``Device Type`` of the CPU in the profiler's memory events (c10's kCPU).
CPU_DEVICE_TYPE = 0
#: Lines the profiler's C++ side writes straight to the process's stdout and
#: stderr (past Python's ``sys.stderr``) that say nothing about the
#: measurement: kineto's trace points (``USDT:``), its probe for a GPU on a
#: host without one, and c10's note that frees of blocks allocated before
#: profiling are not counted (which is what a per-step peak wants).
PROFILER_NOISE = re.compile(
    r'^(USDT:|ERROR:.*gpuGetDeviceCount'
    r'|\[W.*Memory block of unknown size was allocated before)')
#: The parts of a training step that ``--breakdown`` times apart.
STEP_PARTS = ('preprocess', 'unmixed', 'forward', 'backward')
T = TypeVar('T')


def measure(step: Callable[[], object], number: int, clock: str = 'wall',
            changes_state: bool = False, label: str = '') -> Measurement:
    """Time ``number`` calls of ``step`` (the one timing loop).

    Args:
        step (Callable): One call to time, e.g. a training or inference step
            on the next batch.
        number (int): Calls in the timing.
        clock (str): A key of :data:`CLOCKS`. Defaults to ``'wall'``.
        changes_state (bool): ``step`` changes what it measures (a training
            step): time exactly ``number`` calls with our loop instead of
            ``torch.utils.benchmark.Timer``, which adds untimed calls.
            Defaults to False.
        label (str): The measurement's label. Defaults to ``''``.

    Returns:
        Measurement: One run of ``number`` calls
        (``Measurement.mean`` is seconds per call).
    """
    read = CLOCKS[clock]
    threads = torch.get_num_threads()
    if not changes_state:
        return Timer(stmt='step()', globals=dict(step=step), timer=read,
                     num_threads=threads, label=label).timeit(number)
    start = read()
    for _ in range(number):
        step()
    return Measurement(number_per_run=number, raw_times=[read() - start],
                       task_spec=TaskSpec(stmt='step()', setup='pass',
                                          label=label, num_threads=threads))


def throughput(runs: Sequence[Measurement], batch_size: int
               ) -> Tuple[List[float], float, float]:
    """``(images/s of each run, batch size over the median seconds per
    batch, interquartile range over median)`` of the runs of one step
    (median and IQR of ``Measurement.merge``)."""
    merged, = Measurement.merge(runs)
    return ([batch_size / run.mean for run in runs],
            batch_size / merged.median, merged.iqr / merged.median)


def interleaved(steps: Dict[str, Callable[[], T]], repeats: int,
                done: Callable[[int], None] = lambda repeat: None
                ) -> Dict[str, List[T]]:
    """Call every step once per repeat, the order rotated by one each
    repeat (so slow drift of a shared machine hits every step alike);
    ``done(repeat)`` after each repeat. Returns the results per step."""
    names = list(steps)
    runs: Dict[str, List[T]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(steps[name]())
        done(repeat)
    return runs


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


def step_peak_bytes(device: str, step: Callable[[], object]) -> int:
    """Peak bytes torch allocates during ``step()`` above those allocated
    when it began (allocator cache and non-tensor memory excluded)."""
    if not device.startswith('cuda'):
        return _cpu_step_peak(step)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def build_quietly(model_cfg: dict) -> nn.Module:
    """Build a model in mmpretrain's scope without its INFO lines (stdout
    is kept for the tables)."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return MODELS.build(model_cfg)
    finally:
        logger.setLevel(level)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   left: int = 1) -> str:
    """A markdown table, its first ``left`` columns left-aligned and the
    others right-aligned."""
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * left + '---:|' * (len(header) - left)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def synthetic_batch(batch_size: int, input_size: Tuple[int, int],
                    num_classes: int, generator: torch.Generator) -> dict:
    """A fresh batch as a data loader would give it: uint8 images on the
    host and DataSamples with a hard label."""
    images = torch.randint(0, 256, (batch_size, 3, *input_size),
                           dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size, ),
                           generator=generator)
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    return dict(inputs=images, data_samples=samples)


@dataclass
class ModelBench:
    """One classifier's measurements on fresh synthetic batches.

    Args:
        model (nn.Module): The classifier, on ``device``.
        optim_wrapper (OptimWrapper): Its optimizer.
        batch_size (int): Images per batch.
        input_size (tuple[int, int]): Height and width.
        num_classes (int): Range of the random labels.
        device (str): ``'cpu'`` or ``'cuda[:i]'``.
        clock (str): A key of :data:`CLOCKS`.
        amp_dtype (str, optional): Autocast dtype of inference, or None.
        seed (int): Seed of the batches.
    """

    model: nn.Module
    optim_wrapper: OptimWrapper
    batch_size: int
    input_size: Tuple[int, int]
    num_classes: int
    device: str
    clock: str = 'wall'
    amp_dtype: Optional[str] = None
    seed: int = 0
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def _batches(self, count: int) -> Iterator[dict]:
        """``count`` fresh batches made before the clock starts, then
        again from the first (``Timer`` adds untimed calls)."""
        batches = [synthetic_batch(self.batch_size, self.input_size,
                                   self.num_classes, self.generator)
                   for _ in range(count)]
        while True:
            yield from batches

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.split(':')[0],
                              dtype=getattr(torch, self.amp_dtype))

    def complexity(self) -> Tuple[int, int, Dict[str, int]]:
        """``(parameters, MACs, operators not counted)`` of one image's
        inference forward."""
        self.model.eval()
        inputs = torch.randn(1, 3, *self.input_size, device=self.device)
        with torch.no_grad():
            analyzer = FlopAnalyzer(self.model, (inputs, ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            macs = int(analyzer.total())
            skipped = dict(analyzer.unsupported_ops())
        params = sum(p.numel() for p in self.model.parameters())
        return params, macs, skipped

    def train(self, steps: int) -> Measurement:
        """``steps`` full training steps (``model.train_step``), each on a
        fresh batch."""
        batches = self._batches(steps)
        self.model.train()
        return measure(lambda: self.model.train_step(
            next(batches), self.optim_wrapper), steps, self.clock,
            changes_state=True)

    def infer(self, steps: int) -> Measurement:
        """``steps`` inference steps (``model.test_step``)."""
        batches = self._batches(steps)
        self.model.eval()
        with torch.no_grad(), self._autocast():
            return measure(lambda: self.model.test_step(next(batches)),
                           steps, self.clock)

    def infer_split(self, steps: int) -> Tuple[Measurement, Measurement]:
        """The backbone forward, and everything after it (neck, head,
        predictions), timed apart on one preprocessed batch."""
        model = self.model
        model.eval()
        with torch.no_grad(), self._autocast():
            data = model.data_preprocessor(next(self._batches(1)), False)
            feats = model.backbone(data['inputs'])

            def rest():
                out = model.neck(feats) if model.with_neck else feats
                return model.head.predict(out, data['data_samples'])

            return (measure(lambda: model.backbone(data['inputs']), steps,
                            self.clock),
                    measure(rest, steps, self.clock))

    def train_parts(self, steps: int) -> Dict[str, float]:
        """Seconds per batch of each part of a training step, run as
        ``BaseModel.train_step`` runs it: ``preprocess`` (normalisation,
        batch augments), ``unmixed`` (mode ``'self'``: the no-grad forward
        of the un-mixed batch, ``SAOLClassifier.unmixed_outputs``),
        ``forward`` (the rest of the forward and the losses) and
        ``backward`` (loss parsing, backward, optimizer step)."""
        model = self.model
        model.train()
        clock = CLOCKS[self.clock]
        parts = dict.fromkeys(STEP_PARTS, 0.0)
        unmixed_outputs = getattr(model, 'unmixed_outputs', None)

        def timed_unmixed(*args, **kwargs):
            start = clock()
            out = unmixed_outputs(*args, **kwargs)
            parts['unmixed'] += clock() - start
            return out

        if unmixed_outputs is not None:
            # The real method, timed: an instance attribute shadows it for
            # the duration of these steps.
            model.unmixed_outputs = timed_unmixed
        batches = self._batches(steps)
        try:
            for _ in range(steps):
                batch = next(batches)
                start = clock()
                with self.optim_wrapper.optim_context(model):
                    data = model.data_preprocessor(batch, True)
                    preprocessed = clock()
                    losses = model._run_forward(data, mode='loss')
                    forwarded = clock()
                parsed, _ = model.parse_losses(losses)
                self.optim_wrapper.update_params(parsed)
                parts['preprocess'] += preprocessed - start
                parts['forward'] += forwarded - preprocessed
                parts['backward'] += clock() - forwarded
        finally:
            if unmixed_outputs is not None:
                del model.unmixed_outputs
        parts['forward'] -= parts['unmixed']
        return {part: total / steps for part, total in parts.items()}

    def memory(self) -> Tuple[int, int]:
        """``(state bytes, step peak bytes)`` of one training step: the
        parameters, buffers and optimizer state, and
        :func:`step_peak_bytes` (run after a warm-up, so the optimizer
        state exists)."""
        batch = next(self._batches(1))
        self.model.train()
        peak = step_peak_bytes(self.device, lambda: self.model.train_step(
            batch, self.optim_wrapper))
        tensors = [*self.model.parameters(), *self.model.buffers()]
        for state in self.optim_wrapper.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        return sum(t.numel() * t.element_size() for t in tensors), peak


@dataclass
class OnnxResult:
    """PyTorch and ONNX Runtime inference of one graph: images/s per
    repeat, their medians, and the largest output difference."""

    name: str
    label: str
    outputs: List[str]
    torch_runs: List[float] = field(default_factory=list)
    onnx_runs: List[float] = field(default_factory=list)
    torch_images_per_s: float = float('nan')
    onnx_images_per_s: float = float('nan')
    max_abs_diff: Dict[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """ONNX Runtime images/s over PyTorch's."""
        return self.onnx_images_per_s / self.torch_images_per_s


def compare_onnx(graph: InferenceGraph, inputs: torch.Tensor, warmup: int,
                 iters: int, repeats: int, clock: str,
                 result: OnnxResult) -> OnnxResult:
    """Time ``graph`` on ``inputs`` in PyTorch (eager, ``no_grad``) and,
    exported, in an ONNX Runtime CPU session with as many intra-op threads
    as torch uses; the order alternates per repeat.

    Args:
        graph (InferenceGraph): The graph (eval mode).
        inputs (Tensor): ``(N, C, H, W)`` pixels, one batch.
        warmup (int): Untimed runs of each first.
        iters (int): Runs per timing.
        repeats (int): Timings of each.
        clock (str): A key of :data:`CLOCKS`.
        result (OnnxResult): Filled in and returned.
    """
    array = inputs.numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, f'{result.name}.onnx')
        export_graph(graph, path, inputs.shape[-2:],
                     metadata=graph_metadata(graph, inputs.shape[-2:]))
        session = OnnxClassifier(path, threads=torch.get_num_threads())

        def run_torch():
            with torch.no_grad():
                return graph(inputs)

        runs = dict(torch=run_torch, onnx=lambda: session(array))
        for _ in range(warmup):
            for run in runs.values():
                run()
        timings = interleaved(
            {name: functools.partial(measure, run, iters, clock)
             for name, run in runs.items()}, repeats)
        expected = [t.numpy() for t in run_torch()]
        got = runs['onnx']()
    for name, value in zip(graph.output_names, expected):
        if value.dtype.kind == 'f':
            result.max_abs_diff[name] = float(
                np.abs(got[name] - value).max())
    for name, runs_of in timings.items():
        per_run, median, _ = throughput(runs_of, len(inputs))
        setattr(result, f'{name}_runs', per_run)
        setattr(result, f'{name}_images_per_s', median)
    return result
