"""SAOLMapsHook in a real mmengine Runner validation run."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import mmsaol.visualization  # noqa: F401  (registers SAOLMapsHook)
from mmsaol.model_configs import maps_config

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs')


def saol_cfg():
    return Config.fromfile(osp.join(CONFIGS, 'saol_demo.py'))


def gapfc_cfg():
    return Config.fromfile(osp.join(CONFIGS, 'gapfc_demo.py'))


def cam_cfg():
    """The GAP-FC demo read through CAMHead, maps off until the hook."""
    cfg = maps_config(gapfc_cfg())
    cfg.model.head.with_maps = False
    return cfg


def run_val(tmp_path, cfg, hook):
    """Validate 6 images with LocalVisBackend; return the runner and the
    images the visualizer wrote."""
    cfg.work_dir = str(tmp_path)
    cfg.val_dataloader.dataset.indices = 6
    cfg.val_dataloader.batch_size = 4
    cfg.custom_hooks = [hook]
    cfg.visualizer = dict(type='UniversalVisualizer',
                          vis_backends=[dict(type='LocalVisBackend')])
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler'):
        cfg.pop(key, None)
    cfg.default_hooks.checkpoint = None   # saves only while training
    runner = Runner.from_cfg(cfg)
    runner.val()
    return runner, sorted(glob.glob(
        str(tmp_path / '*' / 'vis_data' / 'vis_image' / '*.png')))


# image + maps, 200 px each, and 80 px per colour bar: SAOL's attention has
# its own scale unless every map is min-max scaled.
@pytest.mark.parametrize('make_cfg,scale,width', [
    (saol_cfg, 'shared', 4 * 200 + 2 * 80),
    (saol_cfg, 'per-map', 4 * 200 + 80),
    (cam_cfg, 'shared', 3 * 200 + 80)])
def test_hook_draws_first_images_and_restores_switch(tmp_path, make_cfg,
                                                     scale, width):
    runner, files = run_val(tmp_path, make_cfg(),
                            dict(type='SAOLMapsHook', num_images=5, topk=2,
                                 box_thr=0.5, scale=scale))
    # 5 of the 6 images, across two batches.
    assert len(files) == 5
    assert all(osp.basename(f).startswith('saol_maps_') for f in files)
    for path in files:
        with Image.open(path) as image:
            assert image.size == (width, 250)
    # Maps were switched on for the drawing, then back off.
    assert runner.model.head.with_maps is False


def test_hook_skips_heads_without_maps(tmp_path):
    _, files = run_val(tmp_path, gapfc_cfg(),
                       dict(type='SAOLMapsHook', num_images=2))
    assert files == []


def test_hook_refuses_unknown_scale():
    from mmsaol.visualization import SAOLMapsHook
    with pytest.raises(ValueError, match='SAOLMapsHook.scale'):
        SAOLMapsHook(scale='global')
