"""SAOL on every backbone family of the shipped ImageNet configs.

Each family's shipped SAOL config is shrunk to a tiny backbone of the same
type (same output mode, same way of choosing ``out_indices``, same recipe:
loss, data preprocessor, optimizer) and must train two CPU steps with
:class:`GeometryCutMix`, the self-annotated self-supervision and the
distillation branch, predict with SAOL's maps, and load a stock mmpretrain
checkpoint into its backbone through ``init_cfg``.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import mmpretrain
import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.compat import UnsafeCheckpointError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
# Where ``mmpretrain::`` in a config resolves to.
STOCK_CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')
NUM_CLASSES = 5
BATCH = 4
LOSSES = ('loss_cls', 'loss_gapfc', 'loss_distill', 'loss_spatial',
          'loss_attention')


@dataclass(frozen=True)
class Family:
    """A shipped SAOL config and the tiny variant of its backbone.

    Attributes:
        config: SAOL config under ``configs/``.
        stock: The stock mmpretrain config it inherits.
        tiny: Backbone overrides that shrink it (applied to both).
        channels: Channels of the tiny backbone's SAOL ``out_indices``.
        size: Input side in pixels.
        saol_only: Backbone overrides for the SAOL variant only (where the
            tiny arch has other stage numbers than the full one).
        new_keys: Backbone weights the SAOL variant has and the stock model
            lacks (one norm per extra output stage).
    """

    config: str
    stock: str
    tiny: dict
    channels: Tuple[int, ...]
    size: int = 64
    saol_only: dict = field(default_factory=dict)
    new_keys: Tuple[str, ...] = ()


NEW_NORMS = ('norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias')

TINY_RESNET = dict(depth=18, stem_channels=8, base_channels=8)

FAMILIES: Dict[str, Family] = {
    'resnet50': Family(
        'resnet50_saol_imagenet.py', 'resnet/resnet50_8xb32_in1k.py',
        TINY_RESNET, (16, 32, 64)),
    'resnet101': Family(
        'resnet101_saol_imagenet.py', 'resnet/resnet101_8xb32_in1k.py',
        TINY_RESNET, (16, 32, 64)),
    'resnext50': Family(
        'resnext50-32x4d_saol_imagenet.py',
        'resnext/resnext50-32x4d_8xb32_in1k.py',
        dict(groups=2, width_per_group=4, stem_channels=8, base_channels=8),
        (64, 128, 256)),
    'regnetx': Family(
        'regnetx-3.2gf_saol_imagenet.py', 'regnet/regnetx-3.2gf_8xb64_in1k.py',
        dict(arch=dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=6,
                       bot_mul=1.0)),
        (16, 32, 64)),
    'mobilenet-v2': Family(
        'mobilenet-v2_saol_imagenet.py',
        'mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
        dict(widen_factor=0.25), (8, 24, 1280)),
    # 'small' numbers its layers differently: 3, 8, 12 are the last layers
    # at strides 8, 16, 32 (the large arch's 6, 12, 16).
    'mobilenet-v3': Family(
        'mobilenet-v3-large_saol_imagenet.py',
        'mobilenet_v3/mobilenet-v3-large_8xb128_in1k.py',
        dict(arch='small'), (24, 48, 576),
        saol_only=dict(out_indices=(3, 8, 12))),
    'efficientnet-b0': Family(
        'efficientnet-b0_saol_imagenet.py',
        'efficientnet/efficientnet-b0_8xb32_in1k.py', {}, (40, 112, 1280)),
    'convnext-t': Family(
        'convnext-tiny_saol_imagenet.py',
        'convnext/convnext-tiny_32xb128_in1k.py',
        dict(arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])),
        (16, 32, 64), new_keys=NEW_NORMS),
    'swin-t': Family(
        'swin-tiny_saol_imagenet.py',
        'swin_transformer/swin-tiny_16xb64_in1k.py',
        dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                       num_heads=[1, 1, 2, 2]),
             img_size=64, window_size=2),
        (32, 64, 128), new_keys=NEW_NORMS),
    'vit-b16': Family(
        'vit-base-p16_saol_imagenet.py',
        'vision_transformer/vit-base-p16_64xb64_in1k.py',
        dict(arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                       feedforward_channels=64),
             img_size=32, patch_size=8),
        (32, 32, 32), size=32, saol_only=dict(out_indices=(0, 1, 2))),
}
# Fine-tuning configs: their backbone init_cfg already names a checkpoint.
FINETUNE: Dict[str, Family] = {
    'resnet50-cifar100-ft': Family(
        'resnet50_saol_cifar100-ft.py', 'resnet/resnet50_8xb32_in1k.py',
        TINY_RESNET, (16, 32, 64)),
}


@pytest.fixture(autouse=True, scope='module')
def tiny_model_runtime():
    """One CPU thread (on these tiny tensors a second OpenMP thread costs
    more in synchronisation than it saves, several times more on shared
    cores) and no per-parameter INFO logs from ``init_weights``."""
    logger = MMLogger.get_current_instance()
    level, threads = logger.level, torch.get_num_threads()
    logger.setLevel(logging.WARNING)
    torch.set_num_threads(1)
    yield
    logger.setLevel(level)
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def load_config(path: str) -> Config:
    return Config.fromfile(path)


def model_config(path: str, tiny: dict, num_classes: int) -> ConfigDict:
    """The model of a config with a tiny backbone, ``num_classes`` classes
    and the top-level data preprocessor merged in as mmengine's Runner
    does."""
    cfg = load_config(path)
    model = copy.deepcopy(cfg.model)
    model.backbone.update(copy.deepcopy(tiny))
    preprocessor = copy.deepcopy(cfg.get('data_preprocessor') or {})
    model.setdefault('data_preprocessor', preprocessor)
    model.data_preprocessor.num_classes = num_classes
    model.head.num_classes = num_classes
    return model


def tiny_saol_config(family: Family) -> ConfigDict:
    model = model_config(osp.join(CONFIGS, family.config),
                         {**family.tiny, **family.saol_only}, NUM_CLASSES)
    model.head.update(in_channels=family.channels, channels=16)
    # CutMix on both steps, so that the location losses see the backbone
    # maps every time (the Mixup batches of a recipe's augment list leave
    # them at zero).
    model.train_cfg = dict(augments=dict(type='GeometryCutMix', alpha=1.0))
    return model


def tiny_stock_config(family: Family) -> ConfigDict:
    model = model_config(osp.join(STOCK_CONFIGS, family.stock), family.tiny,
                         NUM_CLASSES)
    model.head.in_channels = family.channels[-1]
    return model


def make_batch(size: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                              generator=g) for _ in range(BATCH)],
        data_samples=[DataSample().set_gt_label(i % NUM_CLASSES)
                      for i in range(BATCH)])


def build(cfg: ConfigDict):
    model = MODELS.build(cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('name', list(FAMILIES))
def test_tiny_variant_trains_and_predicts(name):
    family = FAMILIES[name]
    torch.manual_seed(0)
    np.random.seed(0)  # GeometryCutMix draws its box with numpy
    model = build(tiny_saol_config(family))
    # The recipe's initialisation keeps SAOL's uniform starting attention.
    assert not model.head.attention[-1].weight.any()
    optim_cfg = copy.deepcopy(
        load_config(osp.join(CONFIGS, family.config)).optim_wrapper)
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}

    model.train()
    for step in range(2):
        log_vars = model.train_step(make_batch(family.size, step),
                                    optim_wrapper)
        assert set(LOSSES) <= set(log_vars), sorted(log_vars)
        assert all(math.isfinite(v.item()) for v in log_vars.values())
    for prefix in ('backbone.', 'head.reduce_convs.', 'head.attention.',
                   'head.spatial_cls.', 'head.gapfc.'):
        assert any(not torch.equal(p, start[n])
                   for n, p in model.named_parameters()
                   if n.startswith(prefix)), f'{prefix} did not train'

    model.eval()
    preds = model.test_step(make_batch(family.size, 2))
    scores = torch.stack([p.pred_score for p in preds])
    assert scores.shape == (BATCH, NUM_CLASSES)
    torch.testing.assert_close(scores.sum(1), torch.ones(BATCH))

    data = model.data_preprocessor(make_batch(family.size, 3), False)
    with torch.no_grad():
        grid = model.extract_feat(data['inputs'])[-1].shape[-2:]
        samples = model.predict(data['inputs'], data['data_samples'],
                                with_maps=True)
    assert samples[0].attention_map.shape == grid
    assert samples[0].class_maps.shape[-2:] == grid


@pytest.mark.parametrize('name', list(FAMILIES))
def test_mismatched_stages_name_out_indices(name):
    family = FAMILIES[name]
    cfg = tiny_saol_config(family)
    cfg.backbone.out_indices = tuple(cfg.backbone.out_indices)[1:]
    model = MODELS.build(cfg)
    model.eval()
    with pytest.raises(ValueError, match=r'backbone\.out_indices'):
        model(torch.zeros(1, 3, family.size, family.size))


@pytest.mark.parametrize('name', list(FAMILIES))
def test_out_of_range_stage_names_out_indices(name):
    """An index past the last stage fails with a ValueError naming
    ``out_indices``: at build time where the backbone checks (ours for
    ResNet/RegNet/Swin, mmpretrain's own for MobileNet/EfficientNet), else
    at the first forward (ConvNeXt and ViT drop the index silently)."""
    family = FAMILIES[name]
    cfg = tiny_saol_config(family)
    cfg.backbone.out_indices = (*tuple(cfg.backbone.out_indices)[:-1], 99)
    with pytest.raises(ValueError, match=r'out_indices'):
        model = MODELS.build(cfg)
        model.eval()
        model(torch.zeros(1, 3, family.size, family.size))


@pytest.mark.parametrize('name, pooled', [
    ('vit-b16', dict(out_type='cls_token')),
    ('vit-b16', dict(out_type='avg_featmap')),
    ('convnext-t', dict(gap_before_final_norm=True)),
])
def test_pooled_backbone_output_is_refused(name, pooled):
    family = FAMILIES[name]
    cfg = tiny_saol_config(family)
    cfg.backbone.update(pooled)
    model = MODELS.build(cfg)
    model.eval()
    with pytest.raises(ValueError, match=r'\(N, C, H, W\) feature maps'):
        model(torch.zeros(1, 3, family.size, family.size))


def save_stock_checkpoint(family: Family,
                          path: str) -> Dict[str, torch.Tensor]:
    """Save a randomly initialised tiny stock model as mmpretrain releases
    its checkpoints; return its backbone weights."""
    stock = build(tiny_stock_config(family))
    torch.save(
        dict(meta=dict(mmpretrain_version=mmpretrain.__version__,
                       dataset_meta=dict(classes=[str(i) for i in
                                                  range(NUM_CLASSES)])),
             state_dict=stock.state_dict()), path)
    return {k[len('backbone.'):]: v
            for k, v in stock.state_dict().items()
            if k.startswith('backbone.')}


def pretrained_saol_config(family: Family, checkpoint: str) -> ConfigDict:
    cfg = tiny_saol_config(family)
    init_cfg: Optional[dict] = cfg.backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        # A shipped fine-tuning config: only swap the file.
        assert init_cfg.prefix.rstrip('.') == 'backbone'
        init_cfg.checkpoint = checkpoint
    else:
        cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                     prefix='backbone.')
    return cfg


@pytest.mark.parametrize('name', [*FAMILIES, *FINETUNE])
def test_stock_checkpoint_loads_into_backbone(name, tmp_path):
    family = {**FAMILIES, **FINETUNE}[name]
    path = str(tmp_path / 'stock.pth')
    stock = save_stock_checkpoint(family, path)

    saol = build(pretrained_saol_config(family, path)).backbone.state_dict()
    assert set(saol) - set(stock) == set(family.new_keys)
    assert set(stock) <= set(saol)
    for key, value in stock.items():
        assert torch.equal(saol[key], value), key


class NotAWeight:
    """A pickled object outside the checkpoint allow-list."""


def test_backbone_init_cfg_loads_through_safe_loader(tmp_path):
    family = FAMILIES['resnet50']
    path = str(tmp_path / 'unsafe.pth')
    torch.save(dict(meta=dict(note=NotAWeight()), state_dict={}), path)
    with pytest.raises(UnsafeCheckpointError):
        build(pretrained_saol_config(family, path))
