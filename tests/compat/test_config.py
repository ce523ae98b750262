"""Config files: ``_base_ = ['mmsaol::...']`` in a process that imported
mmsaol, finding and loading a config, and walking and rewriting a config
tree."""
from __future__ import annotations

import os.path as osp

import pytest
from mmengine.config import Config, ConfigDict
from mmpretrain.registry import MODELS

from mmsaol.compat.config import (
    build_split,
    install_config_scope,
    load_config,
    mim_root,
    replace_types,
    resolve_config,
    walk_config,
)
from mmsaol.models import SAOLClassifier


def write(tmp_path, text: str) -> str:
    path = tmp_path / 'child.py'
    path.write_text(text)
    return str(path)


def test_mim_root_holds_configs_tools_and_index():
    root = mim_root()
    assert osp.isfile(osp.join(root, 'model-index.yml'))
    assert osp.isfile(osp.join(root, 'configs', 'saol_demo.py'))
    assert osp.isfile(osp.join(root, 'tools', 'train.py'))


def test_top_level_config_as_base(tmp_path):
    cfg = Config.fromfile(write(tmp_path, (
        "_base_ = ['mmsaol::saol_demo.py']\n"
        'model = dict(head=dict(channels=32))\n')))
    demo = Config.fromfile(osp.join(mim_root(), 'configs', 'saol_demo.py'))
    assert cfg.model.head.channels == 32
    assert cfg.model.head.in_channels == demo.model.head.in_channels
    assert cfg.train_cfg == demo.train_cfg
    # mmsaol's components live in mmpretrain's registries.
    assert cfg.model._scope_ == 'mmpretrain'
    model = MODELS.build(cfg.model)
    assert isinstance(model, SAOLClassifier)
    assert model.head.channels == 32


def test_base_fragment_next_to_an_mmpretrain_base(tmp_path):
    cfg = Config.fromfile(write(tmp_path, (
        '_base_ = [\n'
        "    'mmsaol::_base_/datasets/digits_canvas.py',\n"
        "    'mmpretrain::_base_/models/resnet18_cifar.py',\n"
        ']\n')))
    assert cfg.train_dataloader.dataset.type == 'DigitsCanvas'
    assert cfg.model.backbone.type == 'ResNet_CIFAR'


@pytest.mark.parametrize('path', ['mmsaol::no_such_config.py',
                                  'mmsaol::../setup.py'])
def test_unknown_base_names_the_fix(tmp_path, path):
    with pytest.raises(FileNotFoundError,
                       match="relative to it, e.g. 'mmsaol::saol_demo.py'"):
        Config.fromfile(write(tmp_path, f'_base_ = [{path!r}]\n'))


def test_install_is_idempotent():
    wrapper = Config._get_cfg_path
    install_config_scope()
    assert Config._get_cfg_path is wrapper


def test_mmengine_still_refuses_mmsaol_bases(tmp_path):
    """The reason for the wrapper: mmengine 0.10.7 alone refuses
    ``mmsaol::``. When this fails, mmengine resolves it itself and
    :func:`mmsaol.compat.config.install_config_scope` can go."""
    upstream = Config._get_cfg_path.upstream
    for path in ('mmsaol::saol_demo.py', 'mmsaol::_base_/demo_runtime.py'):
        with pytest.raises((ValueError, AssertionError)):
            upstream(path, str(tmp_path / 'child.py'))


TREE = dict(
    model=dict(type='A', norm=dict(type='SyncBN'),
               stages=[dict(type='SyncBN', eps=1), 'SyncBN', (dict(), 3)]),
    name='x')


def test_walk_config_gives_every_node_with_its_path():
    paths = {path: node for path, node in walk_config(TREE)}
    assert list(paths) == [
        '', 'model', 'model.type', 'model.norm', 'model.norm.type',
        'model.stages', 'model.stages.0', 'model.stages.0.type',
        'model.stages.0.eps', 'model.stages.1', 'model.stages.2',
        'model.stages.2.0', 'model.stages.2.1', 'name']
    assert paths['model.stages.2.1'] == 3
    assert paths['model.norm'] is TREE['model']['norm']


def test_walk_config_goes_below_a_dict_changed_on_the_way():
    tree = ConfigDict(a=dict(type='Wrapper', module=dict(type='Inner')))
    seen = []
    for path, node in walk_config(tree):
        if isinstance(node, dict) and node.get('type') == 'Wrapper':
            node['module'] = dict(type='Replaced', child=dict(type='Leaf'))
        if isinstance(node, dict):
            seen.append((path, node.get('type')))
    assert seen == [('', None), ('a', 'Wrapper'), ('a.module', 'Replaced'),
                    ('a.module.child', 'Leaf')]


def test_replace_types_in_place():
    tree = dict(model=dict(
        type='A', norm=dict(type='SyncBN', momentum=0.1),
        augments=[dict(type='Old', alpha=1.0, extra=True), 'Old'],
        head=dict(type=SAOLClassifier)))
    changed = replace_types(tree, {'SyncBN': ('BN', ()),
                                   'Old': ('New', ('extra', 'absent'))})
    assert changed == ['model.norm', 'model.augments.0']
    assert tree == dict(model=dict(
        type='A', norm=dict(type='BN', momentum=0.1),
        augments=[dict(type='New', alpha=1.0), 'Old'],
        head=dict(type=SAOLClassifier)))
    assert replace_types(tree, {'Old': ('New', ())}) == []


def test_resolve_and_load_config(tmp_path):
    inside = resolve_config('configs/saol_demo.py')
    assert osp.samefile(inside, osp.join(mim_root(), 'configs',
                                          'saol_demo.py'))
    local = tmp_path / 'configs' / 'saol_demo.py'
    local.parent.mkdir()
    local.write_text("_base_ = ['mmsaol::saol_demo.py']\n")
    assert resolve_config(str(local)) == str(local)  # a file as given
    with pytest.raises(FileNotFoundError, match='configs/saol_demo.py'):
        resolve_config('configs/no_such.py')
    cfg = load_config('configs/saol_demo.py',
                      {'model.head.channels': 8})
    assert cfg.model.head.channels == 8
    copy = load_config(cfg, {'model.head.channels': 4})
    assert copy.model.head.channels == 4 and cfg.model.head.channels == 8


def test_build_split():
    cfg = load_config('configs/saol_demo.py')
    dataset = build_split(cfg, 'val', 3)
    assert len(dataset) == 3
    with pytest.raises(ValueError, match="one of .*'test'"):
        build_split(cfg, 'holdout')
    cfg.test_dataloader = None
    with pytest.raises(ValueError, match='no test_dataloader'):
        build_split(cfg, 'test')
