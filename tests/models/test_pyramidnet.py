"""PyramidNet (Han, Kim, Kim, CVPR 2017) and its CIFAR-100 configs.

The published parameter count, the additive widening and the zero-padded
shortcut, the BN-ReLU order of the paper's block, the cost of SAOL on its
stages, and the PyramidNet-20 variants training, resuming and exporting to
ONNX on tiny fake CIFAR data through the tools' entry points.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmsaol.apis import export_onnx, train
from mmsaol.models.backbones import PyramidNet
from mmsaol.models.backbones.pyramidnet import (
    PyramidBlock,
    zero_padded_shortcut,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')


def config(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIGS, f'{name}.py'))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pyramidnet200_has_the_published_parameter_count():
    """PyramidNet-200, alpha 240, GAP-FC on 100 classes: 26.8 M in the
    paper, 26,844,952 in dyhan0920/PyramidNet-PyTorch (built on the meta
    device: shapes only)."""
    with torch.device('meta'):
        model = MODELS.build(config('pyramidnet200_gapfc-cutmix_cifar100')
                             .model)
    assert count(model) == 26_844_952
    assert model.backbone.stage_channels == (384, 704, 1024)


def test_widths_grow_additively():
    """Block k of 3n has width round(16 + k * alpha / (3n)) (paper Eq. 2),
    times 4 for a bottleneck."""
    with torch.device('meta'):
        backbone = PyramidNet(depth=200, alpha=240)
    blocks = [b for s in (1, 2, 3) for b in getattr(backbone, f'layer{s}')]
    assert len(blocks) == 66
    assert [b.out_channels for b in blocks] == [
        4 * int(round(16 + k * 240 / 66)) for k in range(1, 67)]
    assert [b.stride for b in blocks].count(2) == 2


def test_shortcut_pools_and_pads_with_zeros():
    x = torch.randn(2, 4, 5, 5)
    out = zero_padded_shortcut(x, 6, 2)
    assert out.shape == (2, 6, 3, 3)
    torch.testing.assert_close(
        out[:, :4], torch.nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True))
    assert (out[:, 4:] == 0).all()
    assert zero_padded_shortcut(x, 4, 1) is x


@pytest.mark.parametrize('bottleneck', [True, False])
def test_block_is_shortcut_plus_branch_without_a_first_relu(bottleneck):
    """A block whose last BN outputs zeros is exactly the shortcut; with
    an input of negative values only, the branch still varies with the
    input (no ReLU before the first conv: the paper removes it)."""
    block = PyramidBlock(8, 4 if bottleneck else 16, 2, bottleneck, 0.0,
                         dict(type='BN')).eval()
    last_bn = getattr(block, f'bn{block.num_convs + 1}')
    names = [name for name, _ in block.named_children()]
    assert names[:2] == ['bn1', 'conv1']
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        torch.nn.init.zeros_(last_bn.weight)
        torch.nn.init.zeros_(last_bn.bias)
        torch.testing.assert_close(block(x), zero_padded_shortcut(x, 16, 2))
        torch.nn.init.ones_(last_bn.weight)
        negative = -x.abs() - 0.1
        assert not torch.allclose(block(negative), block(2 * negative))


def test_out_indices_select_stages():
    backbone = PyramidNet(depth=11, alpha=12, out_indices=(0, 1, 2))
    outs = backbone(torch.randn(2, 3, 33, 33))
    assert [tuple(o.shape) for o in outs] == [
        (2, 80, 33, 33), (2, 96, 17, 17), (2, 112, 9, 9)]
    # The last stage passes through the final BN + ReLU.
    assert (outs[-1] >= 0).all() and (outs[0] < 0).any()


@pytest.mark.parametrize('kwargs,words', [
    (dict(depth=201), 'depth must be 9n + 2'),
    (dict(depth=21, bottleneck=False), 'depth must be 6n + 2'),
    (dict(alpha=-1), 'alpha must be >= 0'),
    (dict(out_indices=(3, )), 'out_indices must list stages among 0, 1, 2'),
    (dict(shakedrop_prob=2.0), 'drop_prob must be in [0, 1]'),
])
def test_bad_arguments_say_what_to_change(kwargs, words):
    with pytest.raises(ValueError, match=words.replace('[', r'\[')
                       .replace('+', r'\+')):
        PyramidNet(**{'depth': 11, 'alpha': 12, **kwargs})


def test_saol_on_three_stages_is_within_the_cost_budget():
    """SAOL as deployed (no GAP-FC branch) adds at most 5% parameters and
    MACs to PyramidNet-200 + GAP-FC at 32x32 (SAOL_SPEC's budget; measured
    +2.47% and +1.07%)."""
    costs = {}
    for name in ('gapfc-cutmix', 'saol'):
        cfg = config(f'pyramidnet200_{name}_cifar100').model
        if name == 'saol':
            cfg.head.update(distillation=None, self_supervision=None)
        model = MODELS.build(cfg).eval()
        info = get_model_complexity_info(model, input_shape=(3, 32, 32),
                                         show_table=False, show_arch=False)
        costs[name] = info['params'], info['flops']
    (params, macs), (saol_params, saol_macs) = costs['gapfc-cutmix'], \
        costs['saol']
    assert params == 26_844_952
    assert 1.0 < saol_params / params <= 1.05
    assert 1.0 < saol_macs / macs <= 1.05


# --------------------------------------------------- training on fake data
def write_fake_cifar(root: str, per_class: int = 4,
                     classes: int = 4) -> None:
    """32x32 PNGs in class folders (CIFAR's shape; mmpretrain's CIFAR100
    checks the files' md5 sums, so fake data goes through CustomDataset)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = osp.join(root, f'class{c}')
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            assert cv2.imwrite(osp.join(folder, f'{i}.png'), image)


def fake_data_config(tmp_path, name: str) -> str:
    """``configs/NAME.py`` reading the fake data (same train augmentation
    as the CIFAR-100 base: 4-pixel padded crop and flip)."""
    root = str(tmp_path / 'data')
    write_fake_cifar(root)
    path = tmp_path / f'{name}_fake.py'
    path.write_text(f"""
_base_ = [{osp.join(CONFIGS, name + '.py')!r}]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root={root!r},
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='RandomCrop', crop_size=32, padding=4),
                           dict(type='RandomFlip', prob=0.5,
                                direction='horizontal'),
                           dict(type='PackInputs')]))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root={root!r},
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='PackInputs')]))
test_dataloader = val_dataloader
default_hooks = dict(logger=dict(interval=1))
""")
    return str(path)


def run_train(config_path: str, work_dir, *options: str) -> None:
    """``tools/train.py`` (a shim of :func:`mmsaol.apis.train.main`) in this
    process, with ShakeDrop on."""
    train.main([config_path, '--work-dir', str(work_dir), '--seed', '0',
                '--cfg-options', 'model.backbone.shakedrop_prob=0.5',
                *options])


def train_losses(work_dir) -> list:
    records = []
    for path in sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f]
    return [r for r in records if 'loss' in r]


@pytest.fixture(scope='module')
def saol_run(tmp_path_factory):
    """PyramidNet-20 + SAOL: one epoch (2 steps of 8) on fake CIFAR."""
    tmp = tmp_path_factory.mktemp('pyramidnet20_saol')
    config_path = fake_data_config(tmp, 'pyramidnet20_saol_cifar100')
    work_dir = tmp / 'work'
    run_train(config_path, work_dir, 'train_cfg.max_epochs=1')
    return config_path, work_dir


def test_saol_variant_trains_and_resumes(saol_run):
    config_path, work_dir = saol_run
    first = train_losses(work_dir)
    assert [r['iter'] for r in first] == [1, 2]
    for key in ('loss_cls', 'loss_gapfc', 'loss_distill', 'loss_spatial',
                'loss_attention'):
        assert all(np.isfinite(r[key]) for r in first), key
    run_train(config_path, work_dir, 'train_cfg.max_epochs=2', '--resume')
    resumed = train_losses(work_dir)[len(first):]
    assert [(r['epoch'], r['iter']) for r in resumed] == [(2, 3), (2, 4)]
    ckpt = torch.load(osp.join(str(work_dir), 'epoch_2.pth'),
                      weights_only=False)
    assert ckpt['meta']['iter'] == 4


def test_gapfc_variant_trains(tmp_path):
    config_path = fake_data_config(tmp_path,
                                   'pyramidnet20_gapfc-cutmix_cifar100')
    run_train(config_path, tmp_path / 'work', 'train_cfg.max_epochs=1')
    losses = train_losses(tmp_path / 'work')
    assert len(losses) == 2 and all(np.isfinite(r['loss']) for r in losses)


@pytest.mark.parametrize('head', ['saol', 'gapfc'])
def test_trained_variant_exports_to_onnx(saol_run, tmp_path, head):
    """``mmsaol export-onnx`` writes the file, checks it with
    onnx.checker and compares ONNX Runtime with PyTorch at another batch
    size (it raises on a mismatch)."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    config_path, work_dir = saol_run
    out = str(tmp_path / f'{head}.onnx')
    exported = export_onnx.main([
        config_path, osp.join(str(work_dir), 'epoch_1.pth'), out,
        '--head', head, '--input-size', '32'])
    assert osp.isfile(out) and exported.input_size == (32, 32)
    assert exported.output_names[0] == 'probs'
