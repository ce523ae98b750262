"""``tools/export_gapfc.py`` (``mmsaol export-gapfc``): SAOLHead's
self-distilled GAP-FC branch as a stock mmpretrain model.

The paper (Sec. 3) attaches a conventional GAP-FC output to the backbone,
distils SAOL's output into it, and lets the deployed model use either. This
module turns a SAOL config + checkpoint into the GAP-FC model alone, as plain
mmpretrain: an ``ImageClassifier`` with the same backbone (only its last
output), ``GlobalAveragePooling`` and ``LinearClsHead``
(:func:`mmsaol.model_configs.gapfc_twin`). The result loads,
tests and trains with mmpretrain's own tools and never imports mmsaol:

- ``<name>_gapfc.py``: the merged (``_base_``-free) config, every mmsaol type
  replaced by its stock counterpart (:data:`STOCK_TYPES`), ``custom_imports``
  of mmsaol removed; data sets of mmsaol types (the demo ``DigitsCanvas``)
  are written to image folders and read back by mmpretrain's
  ``CustomDataset``;
- ``<name>_gapfc.pth``: ``{'state_dict', 'meta'}`` with only tensors and
  plain Python values, so that ``torch.load(weights_only=True)`` (the default
  since torch 2.6, used by stock mmengine) loads it without an allow-list.
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope, Registry
from mmpretrain import registry as mmpretrain_registry

from mmsaol.apis.cli import add_model_args, user_errors_as_messages, writing
from mmsaol.compat.checkpoint import (
    check_weights,
    safe_torch_load,
    state_dict_of,
)
from mmsaol.compat.config import (
    DATALOADERS,
    TypeTable,
    load_config,
    replace_types,
    resolve_config,
    walk_config,
)
from mmsaol.deploy.export import checked_dataset_meta
from mmsaol.engine import atomic_path, atomic_write
from mmsaol.model_configs import STOCK_MODEL_TYPES, gapfc_twin

#: mmsaol types and the stock mmpretrain/mmengine type that replaces each in
#: an exported config, with the arguments only the mmsaol type accepts: the
#: model's components (:data:`~mmsaol.model_configs.STOCK_MODEL_TYPES`), and
#: ``CPUAmpOptimWrapper`` (written by ``--amp`` on a CPU host) becomes a
#: plain ``OptimWrapper``: mmpretrain's ``--amp`` adds AMP back on a GPU.
STOCK_TYPES: TypeTable = {
    **STOCK_MODEL_TYPES,
    'CPUAmpOptimWrapper': ('OptimWrapper', ('dtype', )),
    'AtomicCheckpointHook': ('CheckpointHook', ()),
}

#: Fields whose mmsaol entries (metrics, hooks) are left out of the exported
#: config, which must not need mmsaol: the metrics (``WSOLMetric``) read
#: SAOL's maps, which the GAP-FC model does not have, and the hooks
#: (reliability hooks, ``SAOLMapsHook``) have no stock counterpart.
#: ``AtomicCheckpointHook`` in ``default_hooks`` becomes the stock
#: ``CheckpointHook`` instead (:data:`STOCK_TYPES`).
DROPPED_FIELDS = ('val_evaluator', 'test_evaluator', 'custom_hooks')
DROPPED_REGISTRIES = ('metric', 'hook')
#: Why each kind of entry is left out (printed by the tool).
DROP_REASONS = {
    'metric': 'an mmsaol metric of SAOL maps, which the GAP-FC model does '
    'not have',
    'hook': 'an mmsaol hook: the exported config must not need mmsaol',
}
#: ``progress(folder, written, total)``: called while images are written.
Progress = Callable[[str, int, int], None]
GAPFC_KEYS = ('head.gapfc.weight', 'head.gapfc.bias')


@dataclass
class ExportResult:
    """Files written by :func:`export_gapfc`.

    Attributes:
        config (str): the stock mmpretrain config.
        checkpoint (str): the GAP-FC checkpoint.
        data_dirs (List[str]): image folders written for data sets of mmsaol
            types (empty when the config uses stock data sets).
        dropped (List[str]): ``field: type`` of the mmsaol metrics and hooks
            left out (see :data:`DROPPED_FIELDS`; :func:`drop_reason` says
            why).
    """

    config: str
    checkpoint: str
    data_dirs: List[str]
    dropped: List[str]


def mmsaol_type_names() -> Dict[str, str]:
    """Every type name mmsaol registers in mmpretrain's registries, mapped
    to the registry's name.

    Drop-in replacements registered over a stock name (the checked
    ``LoadImageFromFile`` and ``CustomDataset``, subclasses of the stock
    class of that name) do not count: without mmsaol a config gets the
    stock class."""
    names = {}
    for registry in vars(mmpretrain_registry).values():
        if not isinstance(registry, Registry):
            continue
        for name, cls in registry.module_dict.items():
            ours = getattr(cls, '__module__', '').split('.')[0] == 'mmsaol'
            stock = any(base.__name__ == name
                        for base in getattr(cls, '__mro__', ())[1:])
            if ours and not stock:
                names[name] = registry.name
    return names


def drop_reason(entry: str) -> str:
    """Why an entry of :attr:`ExportResult.dropped` was left out."""
    return DROP_REASONS['hook' if entry.startswith('custom_hooks:')
                        else 'metric']


def _dump_dataset(dataset_cfg: dict, data_root: str, split: str,
                  progress: Optional[Progress] = None) -> dict:
    """Write a data set's images (after ``indices``) to
    ``data_root/split/*.png`` with the annotation file ``data_root/split.txt``
    and return the ``CustomDataset`` config (without pipeline) that reads
    them back.

    PNG is lossless, so the model sees exactly the same pixels. Only images
    and labels are kept (e.g. the demo's ``gt_bbox`` is not). ``progress``
    is called after every image.
    """
    build_cfg = copy.deepcopy(dataset_cfg)
    build_cfg['pipeline'] = []
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = mmpretrain_registry.DATASETS.build(build_cfg)
    image_dir = osp.join(data_root, split)
    os.makedirs(image_dir, exist_ok=True)
    lines = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        image = info.get('img')
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8):
            raise ValueError(
                f"{dataset_cfg['type']} gives no uint8 'img' array; only "
                'in-memory image data sets can be written to an image folder.'
                ' Use a stock data set type in the config instead.')
        name = f'{index:06d}.png'
        mmcv.imwrite(image, osp.join(image_dir, name))
        lines.append(f"{name} {int(info['gt_label'])}\n")
        if progress is not None:
            progress(image_dir, index + 1, len(dataset))
    with open(osp.join(data_root, f'{split}.txt'), 'w') as f:
        f.writelines(lines)
    return dict(type='CustomDataset',
                data_root=data_root,
                ann_file=f'{split}.txt',
                data_prefix=split,
                metainfo=dict(classes=list(dataset.metainfo['classes'])),
                test_mode=dataset.test_mode)


def _dump_mmsaol_datasets(cfg: dict, data_root: str,
                          mmsaol_types: Dict[str, str],
                          progress: Optional[Progress] = None) -> List[str]:
    """Replace each dataloader's data set of an mmsaol type by an image
    folder, in place; dataloaders with the same data set share one folder.
    Each keeps its own pipeline, which reads the files with a
    ``LoadImageFromFile`` (added in front when it has none)."""
    written: List[Tuple[dict, dict]] = []
    dirs = []
    for loader in DATALOADERS:
        dataset_cfg = (cfg.get(loader) or {}).get('dataset')
        if dataset_cfg is None or dataset_cfg.get('type') not in mmsaol_types:
            continue
        source = {k: v for k, v in dataset_cfg.items() if k != 'pipeline'}
        folder = next((f for s, f in written if s == source), None)
        if folder is None:
            split = loader.split('_')[0]
            folder = _dump_dataset(dataset_cfg, data_root, split, progress)
            written.append((source, folder))
            dirs.append(osp.join(data_root, split))
        pipeline = list(dataset_cfg.get('pipeline', []))
        if not (pipeline and isinstance(pipeline[0], dict)
                and pipeline[0].get('type') == 'LoadImageFromFile'):
            pipeline.insert(0, dict(type='LoadImageFromFile'))
        cfg[loader]['dataset'] = dict(folder, pipeline=pipeline)
    if cfg.get('dataset_type') in mmsaol_types:
        cfg['dataset_type'] = 'CustomDataset'
    return dirs


def _drop_mmsaol_entries(cfg: dict, mmsaol_types: Dict[str, str]
                         ) -> List[str]:
    """Remove, in place, the mmsaol metrics and hooks of
    :data:`DROPPED_FIELDS`; return ``field: type`` of each."""
    dropped = []
    for field in DROPPED_FIELDS:
        value = cfg.get(field)
        entries = value if isinstance(value, list) else [value]
        kept = [e for e in entries if not (
            isinstance(e, dict) and mmsaol_types.get(e.get('type'))
            in DROPPED_REGISTRIES)]
        if len(kept) == len(entries):
            continue
        dropped += [f"{field}: {e['type']}" for e in entries
                    if e not in kept]
        if not kept and field != 'custom_hooks':
            raise ValueError(
                f'{field} has only metrics of SAOL maps ({dropped}), which '
                'the GAP-FC model does not have; give a stock metric with '
                f"--cfg-options {field}.type=Accuracy.")
        cfg[field] = kept if isinstance(value, list) else kept[0]
    return dropped


def _drop_mmsaol_imports(cfg: dict) -> None:
    imports = cfg.get('custom_imports')
    if imports is None:
        return
    kept = [m for m in imports.get('imports', [])
            if m.split('.')[0] != 'mmsaol']
    if kept:
        imports['imports'] = kept
    else:
        cfg.pop('custom_imports')


def _mentions_mmsaol(value: Any, mmsaol_types: Dict[str, str]) -> bool:
    """Whether a config value needs mmsaol: a type name it registers, a
    module path (``'mmsaol'``, ``'mmsaol.x'``, also as ``_scope_`` or
    import) or one of its objects. Paths that merely contain the word do
    not count."""
    if isinstance(value, str):
        return value in mmsaol_types or value.split('.')[0] == 'mmsaol'
    module = getattr(value, '__module__', None)
    return isinstance(module, str) and module.split('.')[0] == 'mmsaol'


def _check_stock(cfg: dict, mmsaol_types: Dict[str, str]) -> None:
    """Refuse to write a config that still needs mmsaol."""
    for path, value in walk_config(cfg):
        if _mentions_mmsaol(value, mmsaol_types):
            raise ValueError(
                f'{path} is {value!r}, which needs mmsaol and has no stock '
                'mmpretrain counterpart the exporter knows. Give a stock '
                f'value with --cfg-options {path}=..., or remove it.')


def stock_model_config(cfg: Config) -> dict:
    """Model config of the stock GAP-FC twin of a SAOL config
    (:func:`~mmsaol.model_configs.gapfc_twin`).

    Raises:
        ValueError: ``model.head`` is no ``SAOLHead`` with
            ``distillation``.
    """
    model = cfg.to_dict()['model']
    twin = gapfc_twin(model)
    if model['head'].get('distillation') is None:
        raise ValueError(
            'model.head.distillation is None: this SAOL head has no GAP-FC '
            'branch to export. Train with model.head.distillation=dict() '
            '(the self-distilled GAP-FC branch), then export that checkpoint.')
    return twin


def stock_config(cfg: Config, data_root: str,
                 progress: Optional[Progress] = None
                 ) -> Tuple[Config, List[str], List[str]]:
    """The stock mmpretrain config of a SAOL config's GAP-FC path.

    The model becomes :func:`stock_model_config`; every other field stays,
    with the mmsaol types of :data:`STOCK_TYPES` replaced, mmsaol metrics and
    hooks left out (:data:`DROPPED_FIELDS`), data sets of mmsaol types
    written to image folders under ``data_root``, mmsaol dropped from
    ``custom_imports`` and ``work_dir``/``load_from``/``resume`` reset.

    Args:
        cfg (Config): merged SAOL config.
        data_root (str): folder for the images of data sets of mmsaol types.
        progress (Progress, optional): called after every image written.

    Returns:
        Tuple[Config, List[str], List[str]]: the new config, the image
        folders written and the metrics/hooks left out.

    Raises:
        ValueError: see :func:`stock_model_config`; or a field keeps an mmsaol
            type that has no stock counterpart.
    """
    mmsaol_types = mmsaol_type_names()
    new = cfg.to_dict()
    new['model'] = stock_model_config(cfg)
    replace_types(new, STOCK_TYPES)
    dropped = _drop_mmsaol_entries(new, mmsaol_types)
    data_dirs = _dump_mmsaol_datasets(new, osp.abspath(data_root),
                                      mmsaol_types, progress)
    _drop_mmsaol_imports(new)
    for key in ('work_dir', 'load_from'):
        new.pop(key, None)
    new['resume'] = False
    _check_stock(new, mmsaol_types)
    return Config(new), data_dirs, dropped


def _require_gapfc(state_dict: Dict[str, torch.Tensor]) -> None:
    missing = [k for k in GAPFC_KEYS if k not in state_dict]
    if missing:
        raise ValueError(
            f'The checkpoint has no trained GAP-FC branch (missing '
            f'{missing}): it was trained without model.head.distillation. '
            'Train with model.head.distillation=dict() to export a GAP-FC '
            'model.')


def gapfc_state_dict(state_dict: Dict[str, torch.Tensor], model_cfg: dict,
                     source: Optional[str] = None
                     ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Weights of the stock GAP-FC model from a SAOL state dict.

    ``backbone.*`` carries over (SAOL and GAP-FC share the backbone);
    ``head.gapfc.{weight,bias}`` becomes ``head.fc.{weight,bias}``. The stock
    model is built from ``model_cfg`` and loads the result strictly, so a
    checkpoint that does not fit the config is refused here.

    Args:
        state_dict (dict): the SAOL model's ``state_dict`` (a ``module.``
            prefix is removed).
        model_cfg (dict): config of the stock model
            (:func:`stock_model_config`).
        source (str, optional): the checkpoint file, for messages.

    Returns:
        Tuple[dict, List[str]]: the new state dict, and the backbone keys of
        the SAOL checkpoint the stock backbone has no use for (e.g. norms of
        outputs it no longer returns).

    Raises:
        ValueError: no ``head.gapfc.*`` weights, or weights that do not fit
            ``model_cfg``.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    _require_gapfc(state_dict)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = mmpretrain_registry.MODELS.build(copy.deepcopy(model_cfg))
    wanted = model.state_dict()
    # Values checked under the checkpoint's own names (finite, dense,
    # floating-point where the model is).
    references = {k: wanted[k] for k in state_dict
                  if k.startswith('backbone.') and k in wanted}
    references.update({f'head.gapfc.{k}': wanted[f'head.fc.{k}']
                       for k in ('weight', 'bias')})
    check_weights(state_dict, references, source)
    new = {k: v.detach().cpu().clone() for k, v in state_dict.items()
           if k.startswith('backbone.') and k in wanted}
    new['head.fc.weight'] = state_dict['head.gapfc.weight'].detach().cpu()
    new['head.fc.bias'] = state_dict['head.gapfc.bias'].detach().cpu()
    dropped = sorted(k for k in state_dict
                     if k.startswith('backbone.') and k not in wanted)
    try:
        model.load_state_dict(new, strict=True)
    except RuntimeError as err:
        raise ValueError(
            'The checkpoint does not fit the config (is it the checkpoint of '
            f'this config?): {err}') from err
    return new, dropped


def _classes(meta: dict, cfg: Config) -> Optional[List[str]]:
    classes = (meta.get('dataset_meta') or {}).get('classes')
    if classes is None:
        dataset = (cfg.get('test_dataloader') or {}).get('dataset', {})
        classes = (dataset.get('metainfo') or {}).get('classes')
    return None if classes is None else [str(c) for c in classes]


def export_gapfc(config: str,
                 checkpoint: str,
                 out_dir: str,
                 cfg_options: Optional[dict] = None,
                 progress: Optional[Progress] = None) -> ExportResult:
    """Export the GAP-FC branch of a self-distilled SAOL model.

    Args:
        config (str): SAOL config file (e.g. ``configs/saol_demo.py`` or the
            copy in the training work_dir; see
            :func:`~mmsaol.compat.config.resolve_config`).
        checkpoint (str): checkpoint of that config, trained with
            ``model.head.distillation``.
        out_dir (str): output folder (created); receives
            ``<name>_gapfc.py``, ``<name>_gapfc.pth`` and, for data sets of
            mmsaol types, ``data/<split>/`` image folders.
        cfg_options (dict, optional): overrides merged into ``config`` first,
            as ``--cfg-options`` does.
        progress (Progress, optional): called as ``progress(folder,
            written, total)`` after every image written for a data set of
            an mmsaol type.

    Returns:
        ExportResult: the paths written.

    Raises:
        ValueError: the config's head has no distillation, the checkpoint has
            no ``head.gapfc.*`` weights or does not fit the config, or the
            config uses an mmsaol type without a stock counterpart. Nothing
            is written then, except data set images for the last case.
    """
    config = resolve_config(config)
    cfg = load_config(config, cfg_options)
    model_cfg = stock_model_config(cfg)
    source = safe_torch_load(checkpoint, map_location='cpu')
    source_meta = source.get('meta') if isinstance(source, dict) else None
    source_meta = source_meta if isinstance(source_meta, dict) else {}
    if 'dataset_meta' in source_meta:
        checked_dataset_meta(source_meta['dataset_meta'], checkpoint)
    weights, dropped = gapfc_state_dict(state_dict_of(source, checkpoint),
                                        model_cfg, checkpoint)

    os.makedirs(out_dir, exist_ok=True)
    new_cfg, data_dirs, dropped_fields = stock_config(
        cfg, osp.join(out_dir, 'data'), progress)
    meta: Dict[str, Any] = dict(
        exported_from=dict(config=osp.abspath(config),
                           checkpoint=osp.abspath(checkpoint),
                           branch='head.gapfc'))
    for key in ('epoch', 'iter'):
        if isinstance(source_meta.get(key), int):
            meta[key] = source_meta[key]
    classes = _classes(source_meta, new_cfg)
    if classes is not None:
        meta['dataset_meta'] = dict(classes=classes)
    if dropped:
        meta['dropped_keys'] = dropped

    name = osp.splitext(osp.basename(config))[0] + '_gapfc'
    config_path = osp.join(out_dir, f'{name}.py')
    checkpoint_path = osp.join(out_dir, f'{name}.pth')
    # Temporary names, renamed when complete: never a half-written file.
    with writing(config_path):
        atomic_write(new_cfg.pretty_text, config_path)
    with writing(checkpoint_path), atomic_path(checkpoint_path) as temp:
        torch.save(dict(state_dict=weights, meta=meta), temp)
    return ExportResult(config_path, checkpoint_path, data_dirs,
                        dropped_fields)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/export_gapfc.py``."""
    parser = argparse.ArgumentParser(
        description="Export a self-distilled SAOL model's GAP-FC branch as "
        'a stock mmpretrain config + checkpoint (ImageClassifier, '
        'GlobalAveragePooling, LinearClsHead) that needs no mmsaol.')
    add_model_args(parser, 'SAOL config file', 'SAOL checkpoint, trained '
                   'with model.head.distillation')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the SAOL config before exporting, '
        'xxx=yyy format, as in tools/train.py')
    return parser


def print_progress(folder: str, written: int, total: int) -> None:
    """Report images written, at every tenth of a folder and its end."""
    step = max(total // 10, 1)
    if written == total or written % step == 0:
        print(f'images written to {folder}: {written}/{total}', flush=True)


@user_errors_as_messages
def main(argv: Optional[Sequence[str]] = None) -> ExportResult:
    """Export; print the files written and what was left out."""
    args = build_parser().parse_args(argv)
    result = export_gapfc(args.config, args.checkpoint, args.out_dir,
                          args.cfg_options, progress=print_progress)
    print(f'config:     {result.config}\ncheckpoint: {result.checkpoint}')
    for folder in result.data_dirs:
        print(f'images:     {folder}')
    for entry in result.dropped:
        print(f'left out ({drop_reason(entry)}): {entry}')
    return result
