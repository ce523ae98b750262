"""``_base_ = ['mmsaol::...']`` in a process that imported mmsaol."""
from __future__ import annotations

import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmsaol.compat.config import install_config_scope, mim_root
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
