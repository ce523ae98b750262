"""Every shipped SAOL config trains with the reliability hooks and keeps
the hooks of the stock recipe it inherits."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SAOL_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '*.py'))
    if 'saol' in osp.basename(p))


@pytest.mark.parametrize('path', SAOL_CONFIGS, ids=osp.basename)
def test_reliability_hooks(path):
    cfg = Config.fromfile(path)
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    types = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert 'NonFiniteLossHook' in types and 'CheckpointMatchHook' in types


@pytest.mark.parametrize('name, stock_hook', [
    ('convnext-tiny_saol_imagenet.py', 'EMAHook'),
    ('regnetx-3.2gf_saol_imagenet.py', 'PreciseBNHook'),
])
def test_stock_recipe_hooks_are_kept(name, stock_hook):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    assert stock_hook in [h['type'] for h in cfg.custom_hooks]
