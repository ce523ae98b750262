"""Seed studies on the demo data set: the numbers behind the README tables.

Every variant is the demo config with a few overrides, trained with the
real ``tools/train.py`` in a subprocess (same seed list, same schedule), then
evaluated with ``tools/test.py`` on its last checkpoint.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    maps: Sequence[str] = ('attention', 'class')


SAOL_OFF = ['model.head.self_supervision=None', 'model.head.distillation=None']
DEMO_VARIANTS = [
    Variant('GAP-FC + CutMix', 'configs/gapfc_demo.py', maps=('cam', )),
    Variant('SAOL + CutMix', 'configs/saol_demo.py', SAOL_OFF),
    Variant('SAOL + CutMix + self-sup. (label maps, L)',
            'configs/saol_demo.py',
            ['model.head.self_supervision.target=label',
             'model.head.distillation=None']),
    Variant('SAOL + CutMix + self-sup. (self-annotated, S)',
            'configs/saol_demo.py', ['model.head.distillation=None']),
    # The default demo config: SAOL and its distilled GAP-FC branch.
    Variant('SAOL + CutMix + self-sup. (self-annotated, S) + distillation',
            'configs/saol_demo.py', heads=('saol', 'gapfc')),
]


def _tool(name: str) -> str:
    return osp.join(REPO_TOOLS, f'{name}.py')


#: WSOL metrics kept in the study (see ``WSOLMetric``).
WSOL_KEYS = ('gt_known_loc', 'max_box_acc', 'max_box_acc_v2', 'peak_in_box')


def _run_tool(tool: str, args: Sequence[str], options: Sequence[str],
              env: Optional[dict], out: Optional[str] = None
              ) -> Optional[dict]:
    """Run ``tools/<tool>.py args [--cfg-options options]`` quietly in a
    subprocess (failing loudly); return the JSON it wrote to ``out``."""
    cmd = [sys.executable, _tool(tool), *args]
    if options:
        cmd += ['--cfg-options', *options]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT, env=env)
    if out is None:
        return None
    with open(out) as f:
        return json.load(f)


def run_variant(variant: Variant, seed: int, work_root: str,
                extra: Sequence[str] = (),
                env: Optional[dict] = None) -> Dict[str, float]:
    """Train one variant with one seed; test its last checkpoint's top-1
    (``top1/<head>``) and localisation (``<map>/<metric>``). A run whose
    work dir already has a ``last_checkpoint`` is only evaluated again."""
    slug = ''.join(c if c.isalnum() else '_' for c in variant.name)
    work_dir = osp.join(work_root, f'{slug}_seed{seed}')
    options = [*variant.options, *extra]
    if not osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        _run_tool('train', [variant.config, '--work-dir', work_dir,
                            '--seed', str(seed)], options, env)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    results = {}
    for head in variant.heads:
        out = osp.join(work_dir, f'metrics_{head or "default"}.json')
        args = [variant.config, checkpoint, '--work-dir', work_dir,
                '--out', out, '--out-item', 'metrics']
        if head is not None:
            args += ['--head', head]
        metrics = _run_tool('test', args, options, env, out)
        results[f'top1/{head or "default"}'] = float(
            metrics['accuracy/top1'])
    for map_name in variant.maps:
        out = osp.join(work_dir, f'wsol_{map_name}.json')
        metrics = _run_tool('eval_wsol', [variant.config, checkpoint,
                                          '--map', map_name, '--out', out],
                            options, env, out)
        for key in WSOL_KEYS:
            results[f'{map_name}/{key}'] = float(metrics[f'wsol/{key}'])
    return results


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample std) of a list of accuracies."""
    if len(values) < 2:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def run_study(variants: Sequence[Variant], seeds: Sequence[int],
              work_root: str, extra: Sequence[str] = (),
              jobs: int = 1) -> dict:
    """Run every variant with every seed; print progress with an ETA.

    ``jobs`` runs go side by side, each with one intra-op thread (on a small
    CPU model, two one-thread runs finish sooner than two two-thread runs one
    after the other).
    """
    env = dict(os.environ, OMP_NUM_THREADS='1') if jobs > 1 else None
    runs = [(variant, seed) for variant in variants for seed in seeds]
    results: dict = {v.name: {} for v in variants}
    start = time.time()

    def one(index_run):
        index, (variant, seed) = index_run
        scores = run_variant(variant, seed, work_root, extra, env)
        elapsed = time.time() - start
        print(f'[{index + 1}/{len(runs)}] {variant.name} seed {seed}: '
              f'{scores} (elapsed {elapsed / 60:.1f} min)', flush=True)
        return variant, seed, scores

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        finished = list(pool.map(one, enumerate(runs)))
    for variant, _, scores in finished:  # in run order: seeds line up
        for head, acc in scores.items():
            results[variant.name].setdefault(head, []).append(acc)
    return results


def markdown_tables(results: dict, seeds: Sequence[int]) -> str:
    """The accuracy table and the localisation table, mean ± std."""
    outputs = {'default': '', 'saol': 'SAOL', 'gapfc': 'GAP-FC branch'}
    maps = {'attention': 'SAOL attention A', 'class': 'SAOL class map A·Y',
            'cam': 'CAM'}
    top1 = ['| variant | output | val top-1 (%) | per seed |',
            '|---|---|---|---|']
    loc = ['| variant | map | GT-known loc (%) | MaxBoxAcc (%) | '
           'MaxBoxAccV2 (%) | peak in box (%) |', '|---|---|---|---|---|---|']
    for name, rows in results.items():
        for key, values in rows.items():
            kind, what = key.split('/', 1)
            if kind == 'top1':
                per_seed = ', '.join(f'{v:.2f}' for v in values)
                top1.append(f'| {name} | {outputs[what]} | '
                            f'{mean_std(values)} | {per_seed} |')
            elif what == WSOL_KEYS[0]:
                cells = [mean_std(rows[f'{kind}/{k}']) for k in WSOL_KEYS]
                loc.append(f'| {name} | {maps[kind]} | ' +
                           ' | '.join(cells) + ' |')
    note = f'\nSeeds {list(seeds)}; mean ± sample std.'
    return '\n'.join(top1) + '\n' + note + '\n\n' + '\n'.join(loc) + \
        '\n' + note
