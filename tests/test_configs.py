"""Every shipped config loads and builds its model; SAOL configs are wired
to their backbone.

Parametrised over whatever ``configs/`` holds (``_base_`` fragments
excluded), so configs added later are checked too. Models are built but
never run on real tensors: the backbone's stage channels come from a forward
on the ``meta`` device (shapes only, no arithmetic), so ViT-B or Swin-T cost
their build time only.
"""
from __future__ import annotations

import copy
import functools
import glob
import logging
import os.path as osp
from typing import Iterator, List, Tuple

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from mmsaol.apis.export_gapfc import mmsaol_type_names
from mmsaol.models import SAOLHead

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_ROOT = osp.join(REPO, 'configs')
CONFIGS = sorted(
    osp.relpath(path, CONFIG_ROOT)
    for path in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(path, CONFIG_ROOT).split(osp.sep))
# Input side of the shape probe when the backbone declares no img_size.
PROBE_SIZE = 224


@pytest.fixture(autouse=True, scope='module')
def quiet_init_logs():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@functools.lru_cache(maxsize=None)
def load(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_ROOT, name))


def model_config(cfg: Config) -> ConfigDict:
    """``cfg.model`` with the top-level data preprocessor merged in, as
    mmengine's Runner does before building."""
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor',
                         copy.deepcopy(cfg.data_preprocessor))
    return model


@pytest.fixture(scope='module', params=CONFIGS)
def built(request) -> Tuple[Config, torch.nn.Module]:
    cfg = load(request.param)
    return cfg, MODELS.build(model_config(cfg))


def test_configs_are_found():
    assert 'saol_demo.py' in CONFIGS
    assert not [c for c in CONFIGS if c.startswith('_base_')]


def test_model_builds(built):
    cfg, model = built
    assert isinstance(model, MODELS.get(cfg.model.type))


def stage_shapes(backbone: torch.nn.Module, size: int,
                 in_channels: int = 3) -> List[tuple]:
    """Shapes of the maps the backbone returns for one ``size`` x ``size``
    image, computed on the meta device (moves ``backbone`` there)."""
    backbone.to('meta').eval()
    with torch.no_grad():
        outs = backbone(torch.empty(1, in_channels, size, size,
                                    device='meta'))
    return [tuple(o.shape) for o in outs]


def test_saol_head_matches_backbone_stages(built):
    cfg, model = built
    if not isinstance(model.head, SAOLHead):
        pytest.skip('not a SAOL config')
    assert model.neck is None, 'SAOL needs model.neck=None'
    size = cfg.model.backbone.get('img_size', PROBE_SIZE)
    shapes = stage_shapes(model.backbone, size,
                          cfg.model.backbone.get('in_channels', 3))
    assert all(len(s) == 4 for s in shapes), (
        f'backbone returns {shapes}, not (N, C, H, W) maps')
    channels = tuple(s[1] for s in shapes)
    assert channels == model.head.in_channels, (
        f'head.in_channels={model.head.in_channels} but backbone.out_indices '
        f'gives {channels}')


def config_types(node) -> Iterator[str]:
    """Every ``type`` string in a (nested) config."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield node['type']
        for value in node.values():
            yield from config_types(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from config_types(value)


def test_saol_self_supervision_sees_every_cutmix_batch(built):
    """Plain CutMix next to GeometryCutMix would leave its batches without a
    box, silently switching the location losses off on them."""
    cfg, model = built
    if getattr(model.head, 'self_supervision', None) is None:
        pytest.skip('no SAOL self-supervision')
    augments = list(config_types(cfg.model.get('train_cfg', {})))
    assert 'GeometryCutMix' in augments
    assert 'CutMix' not in augments


def test_mmsaol_components_are_imported(built):
    """A config that names an mmsaol component imports mmsaol, so it also
    runs with mmpretrain's own tools."""
    cfg, _ = built
    # Drop-in replacements registered over a stock name (the checked
    # LoadImageFromFile) need no mmsaol: without it the config gets the
    # stock class of that name.
    mmsaol_types = mmsaol_type_names()
    ours = {name for name in config_types(cfg._cfg_dict.to_dict())
            if name in mmsaol_types}
    if not ours:
        pytest.skip('uses no mmsaol component')
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'mmsaol' in imports, f'{sorted(ours)} need mmsaol imported'
