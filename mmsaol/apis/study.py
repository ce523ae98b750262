"""Resumable seed studies: named variants x seeds, trained and evaluated
with the project's own tools, summarised as markdown tables.

A study is a list of variants (a config plus ``--cfg-options`` overrides,
the heads to test and the maps to score for localisation) and a list of
seeds, written as a JSON file (see ``configs/fashion-mnist/study_*.json``)
or built in (``demo``). Every run trains with ``mmsaol train`` in a
subprocess (``python -m mmsaol``, which an installed mmsaol runs without a
``tools/`` folder; one OpenMP thread each; in the current folder, like the
relative paths of the study), tests its last checkpoint with ``mmsaol
test`` (once per head) and, for maps, ``mmsaol wsol``
(``tools/eval_wsol.py``).

A finished run writes its record twice: next to its checkpoints and into
the results folder (``results/<study>/<variant>/seed<k>.json``, meant to be
committed). A run with a record whose config and overrides match the
study's is skipped, so a study larger than one sitting finishes over
several, and a second call trains nothing and prints the same table. The
study file is read again before each run starts, so variants added to it
while it runs are picked up.

    python tools/study.py configs/fashion-mnist/study_main.json --jobs 2
    python tools/study.py demo --seeds 0 1 2
    python tools/study.py fashion-mnist --table     # table only, no runs

A study may choose one hyper-parameter per variant on the validation split
(``"tune"`` in its file, e.g. the learning rate): every variant first runs
once per grid value at the tuning seed, the value with the best last
validation top-1 (the config's ``val_dataloader``, validated during
training) is chosen, and the chosen value then runs at every seed of the
study; the tables report those runs' test top-1 (the grid run at the
chosen value is the tuning seed's run). ``--phase tune`` runs the grids
only. Every record keeps the validation curve (top-1 after each
validation during training) and, with ``"fit_options"``, top-1 on the
training images (``--cfg-options`` that point the test loader at them),
for the fit table (train vs test).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import itertools
import json
import math
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmsaol.apis.cli import user_errors_as_messages
from mmsaol.checks import check_choice
from mmsaol.compat.config import mim_root

#: WSOL metrics kept in the study, in the columns of its localisation table
#: (see ``WSOLMetric``: the standard protocol of Choe et al., CVPR 2020, then
#: the extra GT-known loc at threshold 0.2 and the pointing game).
WSOL_KEYS = ('max_box_acc_v2', 'max_box_acc_v2_iou30', 'max_box_acc_v2_iou50',
             'max_box_acc_v2_iou70', 'max_box_acc', 'gt_known_loc',
             'peak_in_box')
#: The key whose presence marks a map scored by the standard protocol (older
#: records, scored otherwise, lack it and are run again).
WSOL_RECORD_KEY = 'max_box_acc_v2_iou30'
HEAD_NAMES = {'default': '', 'saol': 'SAOL', 'gapfc': 'GAP-FC branch'}
MAP_NAMES = {'attention': 'SAOL attention A', 'class': 'SAOL class map A·Y',
             'cam': 'CAM', 'gradcam': 'Grad-CAM', 'gradcam++': 'Grad-CAM++',
             'layercam': 'Layer-CAM'}
#: Data a study prepares before its first run (``"prepare"``,
#: ``--prepare``), by :func:`prepare_data`.
DATA_SETS = ('fashion-mnist', 'clutter-canvas')
#: The validation metric a tuned study chooses by (last point of the curve).
VAL_KEY = 'val_top1/default'


@dataclass
class Variant:
    """One row group of a study.

    Args:
        name (str): Row name in the tables (unique in the study).
        config (str): Config file, relative to the repository.
        options (List[str]): ``--cfg-options`` overrides, ``key=value``.
        heads (Sequence[str | None]): Heads to test: None (the config's
            default output), ``'saol'`` or ``'gapfc'`` (``--head``).
        maps (Sequence[str]): Maps scored by ``mmsaol wsol``
            (``'attention'``, ``'class'``, ``'cam'``, ``'gradcam'``,
            ``'gradcam++'``, ``'layercam'``); empty for data
            without boxes.
        study (str, optional): Share the runs of this variant in another
            study (same name and definition there): e.g. an ablation's
            reference row reuses the main study's records.
        output_names (dict): Table names of the heads, where they differ
            from :data:`HEAD_NAMES` (e.g. ``{"saol": "first head"}`` for
            a model without SAOL).
    """

    name: str
    config: str
    options: List[str] = field(default_factory=list)
    heads: Sequence[Optional[str]] = (None, )
    maps: Sequence[str] = ()
    study: Optional[str] = None
    output_names: Dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """Variants x seeds, and the baseline the paired differences use.

    Args:
        name (str): Folder name under the results and work directories.
        variants (List[Variant]): The variants, in table order.
        seeds (List[int]): Default seeds.
        baseline (str, optional): Name of the variant every other one is
            compared with (its first head), seed by seed.
        prepare (str, optional): Data to prepare before the first run
            (``'fashion-mnist'``).
        description (str): One line for the table's caption.
        comparisons (List[Tuple[str, str]]): Extra paired differences
            ``(variant, reference)`` between two variants' first outputs,
            printed as a second table.
        tune (Tune, optional): A hyper-parameter chosen per variant on the
            validation split before the study's seeds run.
        fit_options (List[str]): ``--cfg-options`` that make the test
            loader read training images without augmentation: each run is
            also tested with them (``train_top1/<head>``, the fit table).
    """

    name: str
    variants: List[Variant]
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    baseline: Optional[str] = None
    prepare: Optional[str] = None
    description: str = ''
    comparisons: List[Tuple[str, str]] = field(default_factory=list)
    failed: int = 0
    tune: Optional['Tune'] = None
    fit_options: List[str] = field(default_factory=list)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        raise ValueError(f'Study {self.name!r} has no variant {name!r}; '
                         f'its variants are {names}.')


@dataclass
class Tune:
    """A hyper-parameter a study chooses per variant on the validation
    split: a grid of values run at one seed, the best last validation top-1
    wins.

    Args:
        option (str): Config key, e.g. ``optim_wrapper.optimizer.lr``.
        values (List): The grid, in table order (ties go to the first).
        seed (int): Seed of the grid's runs. Defaults to 0.
        label (str, optional): Short name in run names and tables.
            Defaults to the key's last part.
    """

    option: str
    values: List
    seed: int = 0
    label: Optional[str] = None

    def __post_init__(self) -> None:
        self.label = self.label or self.option.rsplit('.', 1)[-1]

    def run(self, variant: Variant, value, maps: bool = False) -> Variant:
        """The run of ``variant`` at one grid value (its own records): a
        grid run scores no maps; with ``maps``, the variant's maps (the
        study's runs at the chosen value; the grid run at that value gets
        them added, its training resumed from its work dir when it is
        there)."""
        return replace(variant, name=f'{variant.name} @ {self.label}={value}',
                       options=[*variant.options, f'{self.option}={value}'],
                       maps=variant.maps if maps else ())


SAOL_OFF = ['model.head.self_supervision=None', 'model.head.distillation=None']
DEMO_STUDY = Study(
    name='demo',
    description='demo data set (DigitsCanvas), configs/saol_demo.py schedule',
    baseline='GAP-FC + CutMix',
    variants=[
        Variant('GAP-FC + CutMix', 'configs/gapfc_demo.py',
                maps=('cam', 'gradcam', 'gradcam++')),
        Variant('SAOL + CutMix', 'configs/saol_demo.py', SAOL_OFF,
                maps=('attention', 'class')),
        Variant('SAOL + CutMix + self-sup. (label maps, L)',
                'configs/saol_demo.py',
                ['model.head.self_supervision.target=label',
                 'model.head.distillation=None'],
                maps=('attention', 'class')),
        Variant('SAOL + CutMix + self-sup. (self-annotated, S)',
                'configs/saol_demo.py', ['model.head.distillation=None'],
                maps=('attention', 'class')),
        # The default demo config: SAOL and its distilled GAP-FC branch.
        Variant('SAOL + CutMix + self-sup. (self-annotated, S) + '
                'distillation', 'configs/saol_demo.py',
                heads=('saol', 'gapfc'), maps=('attention', 'class')),
    ])
#: Studies known by name; a name may also be a JSON file path.
NAMED_STUDIES = {
    'demo': DEMO_STUDY,
    'fashion-mnist': 'configs/fashion-mnist/study_main.json',
    'fashion-mnist-ablation': 'configs/fashion-mnist/study_ablation.json',
    'clutter': 'configs/clutter/study_clutter.json',
    'fashion-mnist-converged': 'configs/fashion-mnist/study_converged.json',
}


# ------------------------------------------------------------------ studies
def load_study(spec: str) -> Study:
    """A study by name (:data:`NAMED_STUDIES`) or from a JSON file.

    The file holds ``name``, ``variants`` (each ``name``, ``config`` and
    optionally ``options``, ``heads``, ``maps``) and optionally ``seeds``,
    ``baseline``, ``prepare`` and ``description``.
    """
    named = NAMED_STUDIES.get(spec, spec)
    if isinstance(named, Study):
        return named
    path = named if osp.isfile(named) else osp.join(mim_root(), named)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Study {spec!r} is neither a known name '
            f'({sorted(NAMED_STUDIES)}) nor a JSON file; give e.g. '
            'configs/fashion-mnist/study_main.json.')
    with open(path) as f:
        raw = json.load(f)
    known = {'name', 'variants', 'seeds', 'baseline', 'prepare',
             'description', 'comparisons', 'tune', 'fit_options'}
    if not isinstance(raw, dict) or 'variants' not in raw or \
            set(raw) - known:
        raise ValueError(
            f'Study file {path} must be a JSON object with "name" and '
            f'"variants" and optionally {sorted(known - {"name", "variants"})}'
            f'; got keys {sorted(raw) if isinstance(raw, dict) else raw!r}.')
    variants = []
    for item in raw['variants']:
        extra = set(item) - {'name', 'config', 'options', 'heads', 'maps',
                             'study', 'output_names'}
        if extra or 'name' not in item or 'config' not in item:
            raise ValueError(
                f'Study file {path}: every variant needs "name" and "config" '
                'and may have "options", "heads", "maps", "study", '
                '"output_names"; got '
                f'{sorted(item)}.')
        variants.append(Variant(
            item['name'], item['config'], list(item.get('options', [])),
            tuple(item.get('heads', [None])), tuple(item.get('maps', [])),
            item.get('study'), dict(item.get('output_names', {}))))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f'Study file {path}: variant names must be unique, '
                         f'got {names}.')
    study = Study(raw.get('name') or osp.splitext(osp.basename(path))[0],
                  variants, list(raw.get('seeds', [0, 1, 2])),
                  raw.get('baseline'), raw.get('prepare'),
                  raw.get('description', ''),
                  [tuple(pair) for pair in raw.get('comparisons', [])],
                  tune=_load_tune(raw.get('tune'), path),
                  fit_options=list(raw.get('fit_options', [])))
    if study.prepare is not None:
        check_choice(study.prepare, DATA_SETS, f'{path}: "prepare"')
    check_study(study, path)
    if study.baseline is not None:
        study.variant(study.baseline)
    for pair in study.comparisons:
        if len(pair) != 2:
            raise ValueError(f'Study file {path}: each of "comparisons" is '
                             f'[variant, reference], got {list(pair)}.')
        for name in pair:
            study.variant(name)
    return study


#: A study name (a folder under the results and work directories).
SAFE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,99}')
#: Settings a study's options may not change: where runs write.
FORBIDDEN_OPTIONS = ('work_dir', 'resume', 'load_from')


def check_options(options: Any, where: str) -> List[str]:
    """A list of ``--cfg-options`` overrides, checked: ``key=value``
    strings that are no flag (``--work-dir=...`` would reach the tool's
    command line) and do not move the run out of the study's folders
    (:data:`FORBIDDEN_OPTIONS`).

    Raises:
        ValueError: Naming ``where`` and the entry.
    """
    if not isinstance(options, (list, tuple)):
        raise ValueError(f'{where}: "options" must be a list of key=value '
                         f'strings, got {options!r}.')
    for entry in options:
        key = entry.split('=', 1)[0].strip() if isinstance(entry, str) \
            else None
        if key is None or '=' not in entry or not key or \
                entry.startswith('-') or '\x00' in entry:
            raise ValueError(
                f'{where}: option {entry!r} is not a key=value override '
                '(flags such as --work-dir are not options); write e.g. '
                'model.head.channels=8.')
        if key.split('.')[0] in FORBIDDEN_OPTIONS:
            raise ValueError(
                f'{where}: option {entry!r} sets {key}, which the study '
                'chooses (runs stay in its folders); remove it and use '
                'mmsaol study --work-dir DIR to move all runs.')
    return list(options)


def check_study(study: 'Study', path: str) -> None:
    """Refuse a study whose names would leave its folders (``name``,
    variants' ``study``: one folder name each, :data:`SAFE_NAME`) or whose
    options are no plain overrides (:func:`check_options`).

    Raises:
        ValueError: Naming the file and the field.
    """
    names = [('name', study.name)] + [
        (f'variants[{i}].study', v.study)
        for i, v in enumerate(study.variants) if v.study is not None]
    for field_name, value in names:
        if not (isinstance(value, str) and SAFE_NAME.fullmatch(value)
                and value not in ('.', '..') and '..' not in value):
            raise ValueError(
                f'Study file {path}: "{field_name}" is {value!r}; it names '
                'a folder under the results and work directories, so it '
                'must be letters, digits, ".", "_" or "-" (no "/" or '
                '"..", at most 100 characters).')
    for i, variant in enumerate(study.variants):
        if not isinstance(variant.name, str) or not slug(variant.name):
            raise ValueError(f'Study file {path}: variants[{i}].name must '
                             'be a string with a letter or digit.')
        check_options(variant.options,
                      f'Study file {path}, variant {variant.name!r}')


def _load_tune(raw: Optional[dict], path: str) -> Optional[Tune]:
    """The ``"tune"`` entry of a study file, checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {
            'option', 'values', 'seed', 'label'} or not {
            'option', 'values'} <= set(raw) or not isinstance(
            raw['values'], list) or len(raw['values']) < 2:
        raise ValueError(
            f'Study file {path}: "tune" must be an object with "option" '
            '(a config key), "values" (a list of at least two) and '
            'optionally "seed" and "label", e.g. {"option": '
            '"optim_wrapper.optimizer.lr", "values": [0.05, 0.1, 0.2]}; '
            f'got {raw!r}.')
    return Tune(raw['option'], list(raw['values']), int(raw.get('seed', 0)),
                raw.get('label'))


def chosen_value(study: Study, variant: Variant, results_dir: str,
                 extra: Sequence[str] = ()):
    """The grid value of ``study.tune`` with the best validation top-1 for
    ``variant`` (the first of equals); None until every grid run has its
    record, or for a study without tuning."""
    tune = study.tune
    if tune is None:
        return None
    scores = []
    for value in tune.values:
        run = tune.run(variant, value)
        record = load_record(record_path(results_dir, study, run, tune.seed),
                             run, extra)
        if record is None or VAL_KEY not in record['metrics']:
            return None
        scores.append(record['metrics'][VAL_KEY])
    return tune.values[scores.index(max(scores))]


def run_plan(study: Study, results_dir: str, extra: Sequence[str] = (),
             seeds: Optional[Sequence[int]] = None, phase: str = 'all'
             ) -> List[Tuple[Variant, int]]:
    """Every run of a study, in order: the tuning grids (variant by
    variant), then the study's seeds, seed by seed (for a tuned study at
    each variant's chosen value, once its grid is complete).

    Args:
        phase (str): ``'all'``, ``'tune'`` (the grids only) or ``'final'``
            (the chosen values only).
    """
    check_choice(phase, ('all', 'tune', 'final'), 'phase')
    order = list(seeds) if seeds is not None else study.seeds
    tune = study.tune
    if tune is None:
        return [(v, s) for s in order for v in study.variants]
    plan = []
    if phase != 'final':
        plan += [(tune.run(v, value), tune.seed) for v in study.variants
                 for value in tune.values]
    if phase != 'tune':
        for seed in order:
            for variant in study.variants:
                value = chosen_value(study, variant, results_dir, extra)
                if value is not None:
                    plan.append((tune.run(variant, value, maps=True), seed))
    return plan


def slug(name: str) -> str:
    """File-system name of a variant: alphanumerics, the rest ``_``."""
    return ''.join(c if c.isalnum() else '_' for c in name).strip('_')


def record_path(results_dir: str, study: Study, variant: Variant,
                seed: int) -> str:
    """Where the committed record of one run lives."""
    return osp.join(results_dir, variant.study or study.name,
                    slug(variant.name),
                    f'seed{seed}.json')


def load_record(path: str, variant: Variant,
                extra: Sequence[str] = ()) -> Optional[dict]:
    """The record at ``path`` if it belongs to ``variant`` as defined now
    (same config, overrides, extra overrides, heads and maps); else None
    (run it again)."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    same = (record.get('config') == variant.config
            and record.get('options') == list(variant.options)
            and record.get('extra_options', []) == list(extra)
            and all(f'top1/{h or "default"}' in record.get('metrics', {})
                    for h in variant.heads)
            and all(f'{m}/{WSOL_RECORD_KEY}' in record.get('metrics', {})
                    for m in variant.maps))
    return record if same else None


# --------------------------------------------------------------------- runs
def _run_tool(tool: str, args: Sequence[str], options: Sequence[str],
              env: Optional[dict], log: str,
              out: Optional[str] = None) -> Optional[dict]:
    """Run ``mmsaol <tool> args [--cfg-options options]`` (as ``python -m
    mmsaol``, so it needs no ``tools/`` folder) in a subprocess, appending
    its output to ``log`` (failing loudly); return the JSON it wrote to
    ``out``."""
    cmd = [sys.executable, '-m', 'mmsaol', tool, *args]
    if options:
        cmd += ['--cfg-options', *options]
    with open(log, 'a') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT,
                       env=env)
    if out is None:
        return None
    with open(out) as f:
        return json.load(f)


def read_curve(work_dir: str, key: str = 'accuracy/top1'
               ) -> List[List[float]]:
    """The validation curve of a run: ``[epoch, top-1]`` of each validation
    in the training logs of ``work_dir`` (mmengine's
    ``<timestamp>/vis_data/scalars.json``; a resumed run's later logs
    win)."""
    points: Dict[int, float] = {}
    pattern = osp.join(work_dir, '*', 'vis_data', 'scalars.json')
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if key in entry and 'step' in entry:
                        points[int(entry['step'])] = float(entry[key])
    return [[step, points[step]] for step in sorted(points)]


def run_variant(variant: Variant, seed: int, work_dir: str,
                extra: Sequence[str] = (),
                env: Optional[dict] = None,
                fit_options: Sequence[str] = ()) -> Dict[str, float]:
    """Train one variant with one seed in ``work_dir`` (resuming a run that
    was stopped), then test its last checkpoint: top-1 per head
    (``top1/<head>``; with ``fit_options``, also on the training images,
    ``train_top1/<head>``), the last validation top-1 of training
    (``val_top1/default``) and localisation per map
    (``<map>/<metric>``)."""
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'study.log')
    options = [*variant.options, *extra]
    train_args = [variant.config, '--work-dir', work_dir, '--seed',
                  str(seed)]
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        train_args.append('--resume')  # finishes a stopped run
    _run_tool('train', train_args, options, env, log)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    results = {}
    curve = read_curve(work_dir)
    if curve:
        results[VAL_KEY] = curve[-1][1]
    tests = [('top1', [])] + ([('train_top1', list(fit_options))]
                              if fit_options else [])
    for (kind, test_options), head in itertools.product(tests,
                                                         variant.heads):
        name = f'{kind}/{head or "default"}'
        out = osp.join(work_dir, f'metrics_{name.replace("/", "_")}.json')
        args = [variant.config, checkpoint, '--work-dir', work_dir,
                '--out', out, '--out-item', 'metrics']
        # model.head.test_output rather than --head: also for heads other
        # than SAOLHead with the same two outputs (TwoGAPFCHead).
        head_option = [] if head is None else \
            [f'model.head.test_output={head}']
        metrics = _run_tool('test', args,
                            [*options, *head_option, *test_options], env,
                            log, out)
        results[name] = float(metrics['accuracy/top1'])
    for map_name in variant.maps:
        out = osp.join(work_dir, f'wsol_{map_name}.json')
        metrics = _run_tool('wsol', [variant.config, checkpoint,
                                     '--map', map_name, '--out', out],
                            options, env, log, out)
        for key in WSOL_KEYS:
            results[f'{map_name}/{key}'] = float(metrics[f'wsol/{key}'])
    return results


def _write_json(path: str, data: dict) -> None:
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.{os.getpid()}.{threading.get_ident()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)


def claim_run(work_dir: str) -> bool:
    """Claim a run's work dir for this process (``study.claim`` holds its
    pid), so that two study processes sharing a work root never train the
    same run; False when a live process holds it."""
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'study.claim')
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # left by a process that is gone
                continue
            except PermissionError:
                pass  # alive, another user's
            return pid == os.getpid()
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def release_run(work_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(osp.join(work_dir, 'study.claim'))


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f'{minutes // 60} h {minutes % 60:02d} min' if minutes >= 60 \
        else f'{seconds / 60:.1f} min'


def run_study(spec: str, seeds: Optional[Sequence[int]] = None,
              work_root: str = 'work_dirs/study',
              results_dir: str = 'results', extra: Sequence[str] = (),
              jobs: int = 1, threads: int = 1,
              only: Optional[Sequence[str]] = None,
              log=print, phase: str = 'all') -> Study:
    """Run every missing (variant, seed) of a study; return the study.

    Runs go in the order of :func:`run_plan` (a tuned study's grids first;
    then seed order, every variant's seed 0 first), ``jobs`` at a time,
    each with ``threads`` OpenMP threads. The study is loaded again from
    ``spec`` before each run starts. A run that fails is reported and left
    without a record (the next call tries it again).
    """
    study = load_study(spec)
    if study.prepare is not None:
        prepare_data(study.prepare)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    lock = threading.Lock()
    busy: set = set()
    walls: List[float] = []
    start = time.time()
    state = dict(done=0, failed=0)

    def pending(current: Study) -> List[Tuple[Variant, int]]:
        return [(v, s) for v, s in run_plan(current, results_dir, extra,
                                            seeds, phase)
                if (only is None or any(w in v.name for w in only))
                and (v.name, s) not in busy and load_record(
                    record_path(results_dir, current, v, s), v, extra) is None]

    def worker() -> None:
        while True:
            with lock:
                current = load_study(spec)
                todo = pending(current)
                if not todo:
                    return
                variant, seed = todo[0]
                busy.add((variant.name, seed))
                work_dir = osp.join(work_root, variant.study or current.name,
                                    slug(variant.name), f'seed{seed}')
                if not claim_run(work_dir):
                    continue  # another study process trains it
            began = time.time()
            try:
                metrics = run_variant(variant, seed, work_dir, extra, env,
                                      current.fit_options)
            except (subprocess.CalledProcessError, OSError, ValueError):
                release_run(work_dir)
                with lock:
                    state['failed'] += 1
                    log(f'FAILED {variant.name} seed {seed}: see '
                        f'{osp.join(work_dir, "study.log")}', flush=True)
                continue
            wall = time.time() - began
            path = record_path(results_dir, current, variant, seed)
            earlier = load_record(path, replace(variant, maps=()), extra)
            if earlier is not None:  # a grid run, now with its maps
                wall += earlier.get('wall_s', 0.0)
            record = dict(study=current.name, variant=variant.name,
                          seed=seed, config=variant.config,
                          options=list(variant.options),
                          extra_options=list(extra), metrics=metrics,
                          curve=read_curve(work_dir),
                          wall_s=round(wall, 1), threads=threads, jobs=jobs,
                          finished=datetime.datetime.now(
                              datetime.timezone.utc).isoformat(
                                  timespec='seconds'))
            _write_json(osp.join(work_dir, 'study_record.json'), record)
            _write_json(record_path(results_dir, current, variant, seed),
                        record)
            release_run(work_dir)
            with lock:
                write_results(current, results_dir, extra)
                walls.append(wall)
                state['done'] += 1
                left = len(pending(current)) + len(busy) - 1
                busy.discard((variant.name, seed))
                eta = statistics.mean(walls) * left / jobs
                finish = datetime.datetime.now() + datetime.timedelta(
                    seconds=eta)
                shown = ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                  if k.startswith('top1/'))
                log(f'[{state["done"]} done, {left} left] {variant.name} '
                    f'seed {seed}: {shown} ({_duration(wall)}; elapsed '
                    f'{_duration(time.time() - start)}, ETA '
                    f'{_duration(eta)}, ~{finish:%H:%M})', flush=True)

    threads_ = [threading.Thread(target=worker) for _ in range(max(jobs, 1))]
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join()
    study = load_study(spec)
    write_results(study, results_dir, extra)
    if state['failed']:
        log(f'{state["failed"]} run(s) failed; run the study again to '
            'retry them.', flush=True)
    study.failed = state['failed']
    return study


# -------------------------------------------------------------- statistics
def t_quantile(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom
    (``scipy.stats.t.ppf(0.975, df)``)."""
    if df < 1:
        raise ValueError(f'A t-interval needs df >= 1, got {df}.')
    from scipy.stats import t
    return float(t.ppf(0.975, df))


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (None for a single value)."""
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values)
                                     if len(values) > 1 else None)


def paired_difference(values: Dict[int, float], baseline: Dict[int, float]
                      ) -> Optional[dict]:
    """Seed-by-seed difference to the baseline over their common seeds:
    mean, sample std, the 95% t-interval's half width (None for one seed),
    how many seeds are above, and the seeds used. None without a common
    seed."""
    common = sorted(set(values) & set(baseline))
    if not common:
        return None
    diffs = [values[s] - baseline[s] for s in common]
    mean, std = mean_std(diffs)
    half = None if std is None else \
        t_quantile(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return dict(mean=mean, std=std, half_width=half, seeds=common,
                above=sum(d > 0 for d in diffs))


def fmt_mean_std(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def fmt_difference(diff: Optional[dict]) -> str:
    if diff is None:
        return '—'
    text = f'{diff["mean"]:+.2f}'
    if diff['half_width'] is not None:
        low = diff['mean'] - diff['half_width']
        high = diff['mean'] + diff['half_width']
        text += f' [{low:+.2f}, {high:+.2f}]'
    return f'{text} ({diff["above"]}/{len(diff["seeds"])} above)'


# ----------------------------------------------------------------- results
def collect(study: Study, results_dir: str, extra: Sequence[str] = ()
            ) -> dict:
    """Every committed record of the study as ``{variant: {metric: {seed:
    value}}}`` (current definitions and ``extra`` overrides only), in study
    order."""
    results: dict = {}
    for variant in study.variants:
        rows: dict = {}
        run = variant
        if study.tune is not None:
            value = chosen_value(study, variant, results_dir, extra)
            if value is None:
                continue
            run = study.tune.run(variant, value, maps=True)
        pattern = osp.join(results_dir, run.study or study.name,
                           slug(run.name),
                           'seed*.json')
        for path in sorted(glob.glob(pattern)):
            record = load_record(path, run, extra)
            if record is None:
                continue
            for key, value in record['metrics'].items():
                rows.setdefault(key, {})[int(record['seed'])] = value
            if record.get('curve'):
                rows.setdefault('curve/val_top1', {})[
                    int(record['seed'])] = record['curve']
        if rows:
            results[variant.name] = {
                key: dict(sorted(per_seed.items()))
                for key, per_seed in rows.items()}
    return results


def results_path(study: Study, results_dir: str) -> str:
    return osp.join(results_dir, study.name, 'results.json')


def write_results(study: Study, results_dir: str,
                  extra: Sequence[str] = ()) -> dict:
    """Write ``results/<study>/results.json`` (all records, the baseline)
    and return its content."""
    records = collect(study, results_dir, extra)
    names = {v.name: v.output_names for v in study.variants
             if v.output_names and v.name in records}
    data = dict(study=study.name, description=study.description,
                baseline=study.baseline, output_names=names,
                comparisons=[list(p) for p in study.comparisons
                             if p[0] in records and p[1] in records],
                results={
                    name: {k: {str(s): v for s, v in per.items()}
                           for k, per in rows.items()}
                    for name, rows in records.items()})
    if study.tune is not None:
        data['tuning'] = tuning_results(study, results_dir, extra)
    if data['results'] or data.get('tuning'):
        _write_json(results_path(study, results_dir), data)
    return data


def tuning_results(study: Study, results_dir: str,
                   extra: Sequence[str] = ()) -> dict:
    """A tuned study's grid: the option, the seed, the validation top-1
    per variant and value (recorded runs only) and each complete
    variant's chosen value."""
    tune = study.tune
    grid, chosen = {}, {}
    for variant in study.variants:
        scores = {}
        for value in tune.values:
            run = tune.run(variant, value)
            record = load_record(record_path(results_dir, study, run,
                                             tune.seed), run, extra)
            if record is not None and VAL_KEY in record['metrics']:
                scores[str(value)] = record['metrics'][VAL_KEY]
        if scores:
            grid[variant.name] = scores
        value = chosen_value(study, variant, results_dir, extra)
        if value is not None:
            chosen[variant.name] = value
    return dict(option=tune.option, label=tune.label, seed=tune.seed,
                values=[str(v) for v in tune.values], val_top1=grid,
                chosen=chosen)


def read_results(path: str) -> dict:
    """A results file with its seeds as ints again."""
    with open(path) as f:
        data = json.load(f)
    data['results'] = {
        name: {k: {int(s): v for s, v in per.items()}
               for k, per in rows.items()}
        for name, rows in data['results'].items()}
    return data


def tuning_table(tuning: dict) -> str:
    """Markdown: validation top-1 per variant and grid value, the chosen
    value in bold."""
    label = tuning['label']
    lines = ['| variant | ' + ' | '.join(f'{label} {v}' for v in
                                        tuning['values'])
             + ' | chosen |', '|---|' + '---|' * (len(tuning['values']) + 1)]
    for name, scores in tuning['val_top1'].items():
        chosen = tuning['chosen'].get(name)
        cells = [('**{:.2f}**' if str(chosen) == v else '{:.2f}').format(
            scores[v]) if v in scores else '—' for v in tuning['values']]
        lines.append(f'| {name} | ' + ' | '.join(cells) +
                     f' | {"—" if chosen is None else chosen} |')
    return '\n'.join(lines) + '\n'


def fit_table(data: dict) -> str:
    """Markdown: training vs test top-1 per output, the last validation
    top-1, and the validation curve (mean over seeds at four epochs);
    empty without training top-1 or curves."""
    lines = []
    for name, rows in data['results'].items():
        curves = rows.get('curve/val_top1', {})
        for key, per_seed in rows.items():
            kind, what = key.split('/', 1)
            if kind != 'top1' or (f'train_top1/{what}' not in rows
                                  and not curves):
                continue
            train = rows.get(f'train_top1/{what}')
            val = rows.get(VAL_KEY) if what == 'default' or \
                key == next(k for k in rows if k.startswith('top1/')) \
                else None
            cells = [fmt_mean_std(list(v.values())) if v else '—'
                     for v in (train, per_seed, val)]
            if train:
                gaps = [train[s] - per_seed[s] for s in train
                        if s in per_seed]
                cells.append(f'{statistics.mean(gaps):+.2f}')
            else:
                cells.append('—')
            cells.append(_curve_cell(list(curves.values())))
            output = data.get('output_names', {}).get(name, {}).get(
                what, HEAD_NAMES.get(what, what))
            lines.append(f'| {name} | {output} | ' + ' | '.join(cells) +
                         ' |')
    if not lines:
        return ''
    return '\n'.join(['| variant | output | train top-1 (%) | test top-1 '
                      '(%) | last val top-1 (%) | train − test | val top-1 '
                      'by epoch (mean over seeds) |',
                      '|---|---|---|---|---|---|---|', *lines]) + '\n'


def _curve_cell(curves: List[list]) -> str:
    """Mean validation top-1 over seeds at about a quarter, half, three
    quarters and all of training: ``ep 4: 81.2, ...``."""
    if not curves:
        return '—'
    epochs = sorted(set.intersection(*(set(int(e) for e, _ in c)
                                       for c in curves)))
    if not epochs:
        return '—'
    picks = sorted({epochs[max(0, round(len(epochs) * q) - 1)]
                    for q in (0.25, 0.5, 0.75, 1.0)})
    means = [statistics.mean(dict((int(e), v) for e, v in c)[p]
                             for c in curves) for p in picks]
    return ', '.join(f'ep {p}: {m:.2f}' for p, m in zip(picks, means))


def markdown_tables(data: dict) -> str:
    """The accuracy table (and, when maps were scored, the localisation
    table; for a tuned study the tuning table; with training top-1 or
    validation curves the fit table) of a results file's content."""
    results = data['results']
    output_names = data.get('output_names', {})
    base_name = data.get('baseline')
    base = None
    if base_name in results:
        base_key = next(k for k in results[base_name] if k.startswith('top1/'))
        base = results[base_name][base_key]
    top1 = ['| variant | output | top-1 (%) | per seed | '
            f'Δ vs {base_name or "baseline"} [95% CI] |',
            '|---|---|---|---|---|']
    loc = ['| variant | map | MaxBoxAccV2 (%) | IoU 30 | IoU 50 | IoU 70 | '
           'MaxBoxAcc (%) | GT-known loc (%) | peak in box (%) |',
           '|---|---|---|---|---|---|---|---|---|']
    for name, rows in results.items():
        for key, per_seed in rows.items():
            kind, what = key.split('/', 1)
            if kind == 'top1':
                cells = ', '.join(f'{s}: {v:.2f}'
                                  for s, v in per_seed.items())
                diff = '—' if base is None or per_seed is base else \
                    fmt_difference(paired_difference(per_seed, base))
                output = output_names.get(name, {}).get(
                    what, HEAD_NAMES.get(what, what))
                top1.append(f'| {name} | {output} | '
                            f'{fmt_mean_std(list(per_seed.values()))} | '
                            f'{cells} | {diff} |')
            elif what == WSOL_RECORD_KEY:
                cells = [fmt_mean_std(list(rows[f'{kind}/{k}'].values()))
                         for k in WSOL_KEYS]
                loc.append(f'| {name} | {MAP_NAMES.get(kind, kind)} | ' +
                           ' | '.join(cells) + ' |')
    # No accuracy rows yet (a tuned study with open grids): no table.
    text = '\n'.join(top1) if len(top1) > 2 else ''
    pairs = ['| variant | compared with | Δ top-1 [95% CI] |',
             '|---|---|---|']
    for name, reference in data.get('comparisons', []):
        first = [results[n][next(k for k in results[n]
                                 if k.startswith('top1/'))]
                 for n in (name, reference)]
        pairs.append(f'| {name} | {reference} | '
                     f'{fmt_difference(paired_difference(*first))} |')
    if len(pairs) > 2:
        text += '\n\n' + '\n'.join(pairs)
    if len(loc) > 2:
        text += '\n\n' + '\n'.join(loc)
    extra_tables = [fit_table(data)]
    if data.get('tuning'):
        extra_tables.insert(0, tuning_table(data['tuning']))
    for table in extra_tables:
        if table:
            text += '\n\n' + table.rstrip('\n')
    return text.lstrip('\n') + '\n'


def readme_block(name: str) -> Tuple[str, str]:
    """The markers around a study's generated tables in the README."""
    return (f'<!-- study-tables: {name} (generated by tools/study.py '
            f'{name} --table --readme README.md) -->',
            f'<!-- end study-tables: {name} -->')


def readme_tables(text: str, name: str) -> Optional[str]:
    """The generated tables of study ``name`` in a README's text; None
    when it has none."""
    begin, end = readme_block(name)
    if begin not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip('\n') + '\n'


def update_readme(path: str, name: str, tables: str) -> None:
    """Replace the generated tables of study ``name`` in the README at
    ``path`` (between its markers, which must be there)."""
    begin, end = readme_block(name)
    with open(path) as f:
        text = f.read()
    if begin not in text or end not in text:
        raise ValueError(
            f'{path} has no block for study {name!r}: add the lines '
            f'{begin!r} and {end!r} where its tables go.')
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, 'w') as f:
        f.write(f'{head}{begin}\n{tables}{end}{tail}')


# -------------------------------------------------------------------- data
def prepare_data(name: str) -> str:
    """Prepare a data set of :data:`DATA_SETS` in its default folder under
    ``data/`` (a no-op when it is there) and return the folder:
    ``fashion-mnist`` (the idx files, from Debian's
    ``dataset-fashion-mnist``) or ``clutter-canvas`` (generated from
    them, see :mod:`mmsaol.datasets.clutter_canvas`)."""
    check_choice(name, DATA_SETS, 'prepare')
    if name == 'fashion-mnist':
        from mmsaol.datasets.fashion_mnist import prepare_fashion_mnist
        return prepare_fashion_mnist()
    from mmsaol.datasets.clutter_canvas import prepare_clutter_canvas
    return prepare_clutter_canvas()


# --------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``mmsaol study``."""
    parser = argparse.ArgumentParser(
        description='Run a resumable seed study and print '
        'its tables: ' + ', '.join(sorted(NAMED_STUDIES)) + ' or a JSON '
        'study file.')
    parser.add_argument('study', nargs='?', default=None,
                        help='study name or JSON file')
    parser.add_argument('--seeds', type=int, nargs='+', default=None,
                        help="seeds to run (default: the study's)")
    parser.add_argument('--only', nargs='+', default=None,
                        help='run only the variants whose name contains one '
                        'of these strings')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs side by side')
    parser.add_argument('--threads', type=int, default=1,
                        help='OpenMP threads per run')
    parser.add_argument('--work-dir', default='work_dirs/study',
                        help='root of the runs\' work directories')
    parser.add_argument('--results-dir', default='results',
                        help='root of the committed run records')
    parser.add_argument('--table', action='store_true',
                        help='print the tables of the records only')
    parser.add_argument('--out', default=None,
                        help='also write the results JSON here')
    parser.add_argument('--readme', default=None,
                        help="write the tables into this README's block "
                        'for the study')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides for every run (recorded)')
    parser.add_argument('--prepare-fashion-mnist', action='store_true',
                        help='un-gzip Fashion-MNIST into data/fashion-mnist')
    parser.add_argument('--prepare', choices=DATA_SETS, default=None,
                        help='prepare this data set under data/ (and run '
                        'the study, if one is given)')
    parser.add_argument('--phase', choices=('all', 'tune', 'final'),
                        default='all',
                        help="a tuned study's runs: 'tune' (the grids "
                        "only), 'final' (the chosen values only) or 'all'")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@user_errors_as_messages
def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the study (or only read its records) and print its tables."""
    args = parse_args(argv)
    prepare = ['fashion-mnist'] if args.prepare_fashion_mnist else []
    if args.prepare:
        prepare.append(args.prepare)
    for name in prepare:
        print(f'{name} in', prepare_data(name))
    if prepare and args.study is None:
        return
    if args.study is None:
        raise ValueError('Give a study name (demo, fashion-mnist, '
                         'fashion-mnist-ablation) or a JSON study file.')
    check_options(args.cfg_options, '--cfg-options')
    if args.table:
        study = load_study(args.study)
    else:
        study = run_study(args.study, args.seeds, args.work_dir,
                          args.results_dir, args.cfg_options, args.jobs,
                          args.threads, args.only, phase=args.phase)
    data = write_results(study, args.results_dir, args.cfg_options)
    if args.out:
        _write_json(args.out, data)
    if not data['results'] and not data.get('tuning', {}).get('val_top1'):
        print(f'No finished runs of study {study.name!r} in '
              f'{args.results_dir}.')
    else:
        print(markdown_tables(data), end='')
        if args.readme:
            update_readme(args.readme, study.name, markdown_tables(data))
    if study.failed:  # any failed run: a non-zero exit status
        raise SystemExit(1)


if __name__ == '__main__':
    main()
