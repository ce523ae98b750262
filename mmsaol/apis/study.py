"""Seed studies on the demo data set: the numbers behind the README tables.

Every variant is the demo config with a few overrides, trained with the
real ``tools/train.py`` in a subprocess (same seed list, same schedule), then
evaluated with ``tools/test.py`` on its last checkpoint.
"""
from __future__ import annotations

import json
import os.path as osp
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

REPO_TOOLS = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'tools')


@dataclass
class Variant:
    """One row of a study: a config, overrides, and which heads to test."""

    name: str
    config: str
    options: List[str] = field(default_factory=list)
    heads: Sequence[Optional[str]] = (None, )


SAOL_OFF = ['model.head.self_supervision=None', 'model.head.distillation=None']
DEMO_VARIANTS = [
    Variant('GAP-FC + CutMix', 'configs/gapfc_demo.py'),
    Variant('SAOL + CutMix', 'configs/saol_demo.py', SAOL_OFF),
    Variant('SAOL + CutMix + self-sup. (label maps, L)',
            'configs/saol_demo.py',
            ['model.head.self_supervision.target=label',
             'model.head.distillation=None']),
    Variant('SAOL + CutMix + self-sup. (self-annotated, S)',
            'configs/saol_demo.py', ['model.head.distillation=None']),
    Variant('SAOL + CutMix + S + distillation', 'configs/saol_demo.py',
            heads=('saol', 'gapfc')),
]


def _tool(name: str) -> str:
    return osp.join(REPO_TOOLS, f'{name}.py')


def run_variant(variant: Variant, seed: int, work_root: str,
                extra: Sequence[str] = ()) -> Dict[str, float]:
    """Train one variant with one seed and test its last checkpoint."""
    slug = ''.join(c if c.isalnum() else '_' for c in variant.name)
    work_dir = osp.join(work_root, f'{slug}_seed{seed}')
    options = [*variant.options, *extra]
    cmd = [sys.executable, _tool('train'), variant.config, '--work-dir',
           work_dir, '--seed', str(seed)]
    if options:
        cmd += ['--cfg-options', *options]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    results = {}
    for head in variant.heads:
        out = osp.join(work_dir, f'metrics_{head or "default"}.json')
        cmd = [sys.executable, _tool('test'), variant.config, checkpoint,
               '--work-dir', work_dir, '--out', out, '--out-item', 'metrics']
        if head is not None:
            cmd += ['--head', head]
        if options:
            cmd += ['--cfg-options', *options]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)
        with open(out) as f:
            metrics = json.load(f)
        results[head or 'default'] = float(metrics['accuracy/top1'])
    return results


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample std) of a list of accuracies."""
    if len(values) < 2:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def run_study(variants: Sequence[Variant], seeds: Sequence[int],
              work_root: str, extra: Sequence[str] = ()) -> dict:
    """Run every variant with every seed; print progress and a table."""
    results: dict = {}
    total = len(variants) * len(seeds)
    done = 0
    start = time.time()
    for variant in variants:
        for seed in seeds:
            scores = run_variant(variant, seed, work_root, extra)
            for head, acc in scores.items():
                results.setdefault(variant.name, {}).setdefault(
                    head, []).append(acc)
            done += 1
            elapsed = time.time() - start
            eta = elapsed / done * (total - done)
            print(f'[{done}/{total}] {variant.name} seed {seed}: {scores} '
                  f'(elapsed {elapsed / 60:.1f} min, eta {eta / 60:.1f} min)',
                  flush=True)
    return results


def markdown_table(results: dict, seeds: Sequence[int]) -> str:
    """Top-1 table: one row per variant (and per tested head)."""
    lines = ['| variant | output | val top-1 (%) | per seed |',
             '|---|---|---|---|']
    for name, heads in results.items():
        for head, accs in heads.items():
            output = {'default': '', 'saol': 'SAOL',
                      'gapfc': 'GAP-FC branch'}[head]
            per_seed = ', '.join(f'{a:.2f}' for a in accs)
            lines.append(f'| {name} | {output} | {mean_std(accs)} | '
                         f'{per_seed} |')
    lines.append(f'\nSeeds {list(seeds)}; mean ± sample std.')
    return '\n'.join(lines)
