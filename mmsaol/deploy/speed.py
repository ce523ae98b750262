"""ONNX Runtime against PyTorch: inference images/s of the same graph.

The measurement behind ``tools/benchmark.py --onnx``
(:func:`mmsaol.apis.benchmark.benchmark_onnx`). For the GAP-FC and SAOL
models of a benchmark :class:`~mmsaol.apis.benchmark.Setup` (same backbone,
batch and input size), the :class:`InferenceGraph` (normalisation, backbone,
head; SAOL with its attention and class maps, GAP-FC with probabilities
alone, as each is deployed) runs in PyTorch (eager, ``no_grad``) and,
exported to ONNX, in an ONNX Runtime CPU session with as many intra-op
threads as torch uses. Both see the same batches, are warmed up, and are
timed in alternating order per repeat; the medians are reported, with the
largest difference between their outputs on the same batch.
"""
from __future__ import annotations

import logging
import os.path as osp
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from ..model_configs import maps_config
from .export import (
    export_graph,
    graph_metadata,
)
from .graph import InferenceGraph
from .runtime import OnnxClassifier

#: Benchmark variants with an inference graph of their own (the other SAOL
#: variants differ only in training) and the output each deploys with.
SPEED_VARIANTS = (('gapfc', 'gapfc'), ('saol', None))
RUNTIMES = ('torch', 'onnx')


@dataclass
class SpeedResult:
    """PyTorch and ONNX Runtime inference of one variant (medians)."""

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


def _images_per_s(run: Callable[[], object], batches: int, batch_size: int,
                  clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(batches):
        run()
    return batches * batch_size / (clock() - start)


def compare_speed(graph: InferenceGraph, inputs: torch.Tensor, warmup: int,
                  iters: int, repeats: int, clock: Callable[[], float],
                  result: SpeedResult) -> SpeedResult:
    """Time ``graph`` on ``inputs`` in PyTorch and in ONNX Runtime.

    Args:
        graph (InferenceGraph): The graph (eval mode).
        inputs (Tensor): ``(N, C, H, W)`` pixels, one batch.
        warmup (int): Untimed runs of each first.
        iters (int): Runs per timing.
        repeats (int): Timings of each; the order alternates per repeat.
        clock (Callable): ``time.perf_counter`` or ``time.process_time``.
        result (SpeedResult): Filled in and returned.
    """
    threads = torch.get_num_threads()
    array = inputs.numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, f'{result.name}.onnx')
        export_graph(graph, path, inputs.shape[-2:],
                     metadata=graph_metadata(graph, inputs.shape[-2:]))
        session = OnnxClassifier(path, threads=threads)

        def run_torch():
            with torch.no_grad():
                return graph(inputs)

        def run_onnx():
            return session(array)

        runs = dict(torch=run_torch, onnx=run_onnx)
        for _ in range(warmup):
            for run in runs.values():
                run()
        for repeat in range(repeats):
            order = RUNTIMES if repeat % 2 == 0 else RUNTIMES[::-1]
            for name in order:
                getattr(result, f'{name}_runs').append(_images_per_s(
                    runs[name], iters, inputs.shape[0], clock))
        expected = [t.numpy() for t in run_torch()]
        got = run_onnx()
    for name, value in zip(graph.output_names, expected):
        if value.dtype.kind == 'f':
            result.max_abs_diff[name] = float(
                np.abs(got[name] - value).max())
    result.torch_images_per_s = statistics.median(result.torch_runs)
    result.onnx_images_per_s = statistics.median(result.onnx_runs)
    return result


def build_variant(model_cfg: dict) -> torch.nn.Module:
    """A benchmark variant's classifier, with CAMHead for GAP-FC (see
    :func:`maps_config`), quietly."""
    cfg = maps_config(Config(dict(model=model_cfg)))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return MODELS.build(cfg.model).eval()
    finally:
        logger.setLevel(level)


def markdown_table(results: Sequence[SpeedResult]) -> str:
    """Images/s of both runtimes (ratios to GAP-FC in the same runtime),
    ONNX Runtime over PyTorch, and the largest output difference."""
    base = next((r for r in results if r.name == 'gapfc'), results[0])
    lines = ['| variant | outputs | PyTorch images/s | ONNX Runtime '
             'images/s | ONNX Runtime / PyTorch | max abs diff |',
             '|---|---|---:|---:|---:|---:|']
    for r in results:
        diff = max(r.max_abs_diff.values(), default=float('nan'))
        lines.append(
            f'| {r.label} | {", ".join(r.outputs)} | '
            f'{r.torch_images_per_s:.2f} '
            f'({r.torch_images_per_s / base.torch_images_per_s:.3f}) | '
            f'{r.onnx_images_per_s:.2f} '
            f'({r.onnx_images_per_s / base.onnx_images_per_s:.3f}) | '
            f'**{r.speedup:.2f}x** | {diff:.1e} |')
    return '\n'.join(lines)
