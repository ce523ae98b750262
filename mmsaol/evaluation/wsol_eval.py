"""Models that attach maps at inference, and the config of a WSOL
evaluation (``Runner.test`` with :class:`WSOLMetric`)."""
from __future__ import annotations

import copy
from typing import Iterator, Optional, Union

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmpretrain.apis import get_model
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader

from ..models.heads.cam_head import CAMHead
from ..models.heads.saol_head import SAOLHead

SAOL_HEADS = (SAOLHead.__name__, )
GAPFC_HEADS = ('LinearClsHead', CAMHead.__name__)
GAPFC_NECKS = ('GlobalAveragePooling', )
MAP_SOURCES = ('class', 'attention', 'cam')
SPLITS = ('train', 'val', 'test')
#: Splits ``wsol_config`` evaluates (their pipelines only resize).
WSOL_SPLITS = ('test', 'val')


def load_config(config: Union[str, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """A config from a file (or a copy of a Config) with ``cfg_options``
    (``--cfg-options`` style ``{'a.b': value}``) merged in."""
    cfg = copy.deepcopy(config) if isinstance(config, Config) \
        else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _head_type(cfg: Config) -> str:
    head_type = cfg.model.head.type
    return head_type if isinstance(head_type, str) else head_type.__name__


def maps_config(cfg: Config, topk: Union[int, str, None] = None) -> Config:
    """A copy of ``cfg`` whose model attaches maps to its predictions.

    - ``SAOLHead``: ``head.with_maps=True``, which attaches the attention map
      and the class maps ``A * Y_c``.
    - GAP-FC (``LinearClsHead`` after ``GlobalAveragePooling`` or no neck):
      the head becomes :class:`CAMHead` and the neck ``None`` (the head
      pools the last map itself), which attaches class activation maps.
      The parameters are the same, so the same checkpoint loads.

    Args:
        cfg (Config): A full config (``model`` at least).
        topk (int | str, optional): Class maps per image
            (``head.maps_topk``); ``'all'`` for one per class (what GT-known
            localisation needs). Defaults to the head's own default.

    Returns:
        Config: the modified copy.
    """
    cfg = copy.deepcopy(cfg)
    head = cfg.model.head
    head_type = _head_type(cfg)
    if head_type in GAPFC_HEADS:
        neck = cfg.model.get('neck')
        neck_type = neck and neck.get('type')
        if neck is not None and neck_type not in GAPFC_NECKS:
            raise ValueError(
                f'Class activation maps need the last feature map, but '
                f'model.neck is {neck_type!r}: only GlobalAveragePooling (or '
                'no neck) can be dropped for CAMHead to pool by itself.')
        cfg.model.neck = None
        head.type = CAMHead.__name__
    elif head_type not in SAOL_HEADS:
        raise ValueError(
            f'Maps need model.head.type SAOLHead or a GAP-FC LinearClsHead '
            f'(drawn as CAM), got {head_type!r}.')
    head.with_maps = True
    if topk == 'all':
        head.maps_topk = int(head.num_classes)
    elif topk is not None:
        if not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive int or 'all', got "
                             f'{topk!r}.')
        head.maps_topk = topk
    return cfg


def build_maps_model(config: Union[str, Config],
                     checkpoint: Optional[str] = None,
                     topk: Union[int, str, None] = None,
                     device: str = 'cpu',
                     cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a model from a config and checkpoint, with maps switched on
    (see :func:`maps_config`), in evaluation mode.

    The returned model carries ``_config`` (the modified config) and
    ``_dataset_meta`` (the classes from the checkpoint, else from the test
    data set), as mmpretrain's ``get_model`` sets them, so it can be handed
    to ``ImageClassificationInferencer``.
    """
    return get_model(maps_config(load_config(config, cfg_options), topk),
                     checkpoint, device=device)


def build_split(cfg: Config, split: str, num: Optional[int] = None):
    """The data set of ``cfg.<split>_dataloader``, its first ``num`` items
    when given."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
    key = f'{split}_dataloader'
    if not cfg.get(key):
        raise ValueError(f'The config has no {key} to take images from.')
    dataset_cfg = copy.deepcopy(cfg[key].dataset)
    if num is not None:
        dataset_cfg.indices = int(num)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dataset_cfg)


def iter_batches(dataset, batch_size: int,
                 num_workers: int = 0) -> Iterator[dict]:
    """Collated batches ``{'inputs', 'data_samples'}`` of a data set, in
    order."""
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False,
                          num_workers=num_workers, collate_fn=pseudo_collate)


def wsol_config(cfg: Config,
                map: str = 'class',
                split: str = 'test',
                num: Optional[int] = None,
                batch_size: Optional[int] = None,
                **metric_kwargs) -> Config:
    """A copy of ``cfg`` whose ``Runner.test()`` gives classification and
    WSOL accuracy (what ``tools/eval_wsol.py`` runs).

    The model attaches one map per class (:func:`maps_config` with
    ``topk='all'``, so the true class always has one), ``test_evaluator``
    becomes top-1 ``Accuracy`` and :class:`WSOLMetric`, and
    ``test_dataloader`` reads the chosen split.

    Args:
        cfg (Config): Model and data config.
        map (str): ``'class'`` or ``'attention'`` (SAOL models), or
            ``'cam'`` (GAP-FC models, scored by their class activation maps).
        split (str): Data loader of the config to read: ``'test'``
            (default) or ``'val'``.
        num (int, optional): Evaluate the first ``num`` images only.
        batch_size (int, optional): Defaults to the data loader's.
        **metric_kwargs: Other arguments of :class:`WSOLMetric`
            (``threshold``, ``iou_thr``...).

    Returns:
        Config: the modified copy.
    """
    if map not in MAP_SOURCES:
        raise ValueError(f'map must be one of {MAP_SOURCES}, got {map!r}.')
    if split not in WSOL_SPLITS:
        raise ValueError(f'split must be one of {WSOL_SPLITS}, got '
                         f'{split!r}.')
    head_type = _head_type(cfg)
    wanted = GAPFC_HEADS if map == 'cam' else SAOL_HEADS
    if head_type not in wanted:
        raise ValueError(
            f'map={map!r} needs model.head.type in {wanted}, but the config '
            f"has {head_type!r}: use map='cam' for GAP-FC models and "
            "'class' or 'attention' for SAOL models.")
    cfg = maps_config(cfg, topk='all')
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        raise ValueError(f'The config has no {split}_dataloader to '
                         'evaluate.')
    loader = copy.deepcopy(loader)
    if num is not None:
        if num < 1:
            raise ValueError(f'num must be a positive count, got {num}.')
        loader.dataset.indices = int(num)
    if batch_size is not None:
        loader.batch_size = int(batch_size)
    cfg.test_dataloader = loader
    cfg.test_evaluator = [
        dict(type='Accuracy', topk=(1, )),
        dict(type='WSOLMetric',
             map='attention' if map == 'attention' else 'class',
             **metric_kwargs),
    ]
    if cfg.get('test_cfg') is None:
        cfg.test_cfg = dict()
    return cfg
