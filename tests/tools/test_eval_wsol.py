"""tools/eval_wsol.py (Runner.test with WSOLMetric) on the demo validation
split: the same numbers as a plain loop over the model (SAOL maps, CAM,
Grad-CAM), the files of a Runner run, and known answers for a model with
uniform attention."""
import copy
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import Evaluator
from mmpretrain.apis import get_model
from mmpretrain.registry import DATASETS, METRICS

from mmsaol.apis.eval_wsol import main, wsol_config
from mmsaol.model_configs import maps_config
from mmsaol.visualization.gradcam import gradcam_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
KEYS = {'accuracy/top1', 'wsol/gt_known_loc', 'wsol/top1_loc',
        'wsol/max_box_acc', 'wsol/max_box_acc_thr',
        'wsol/max_box_acc_v2_iou30', 'wsol/max_box_acc_v2_iou50',
        'wsol/max_box_acc_v2_iou70', 'wsol/max_box_acc_v2',
        'wsol/peak_in_box'}


def demo_cfg(name):
    return Config.fromfile(osp.join(CONFIGS, f'{name}.py'))


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised demo models; the SAOL one with non-zero
    attention weights (its maps are not uniform), and as initialised
    (zero attention weights: uniform attention)."""
    root = tmp_path_factory.mktemp('ckpt')
    paths = {}
    for name in ('saol_demo', 'gapfc_demo', 'uniform'):
        model = get_model(demo_cfg('saol_demo' if name == 'uniform'
                                   else name))
        if name == 'saol_demo':
            torch.manual_seed(0)
            torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
        paths[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   paths[name])
    return paths


def loop_metrics(config, checkpoint, source, num, batch_size, threshold):
    """Accuracy and WSOLMetric by a plain loop: model.test_step on the
    batches of the validation split, then Evaluator (what the tool did
    before it ran Runner.test)."""
    cfg = demo_cfg(config)
    cfg = gradcam_config(cfg, source) if source.startswith('grad') else \
        maps_config(cfg, topk='all')
    model = get_model(cfg, checkpoint)
    dataset_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    dataset_cfg.indices = num
    dataset = DATASETS.build(dataset_cfg)
    evaluator = Evaluator([
        METRICS.build(dict(type='Accuracy', topk=(1, ))),
        METRICS.build(dict(type='WSOLMetric', threshold=threshold,
                           map='attention' if source == 'attention'
                           else 'class'))])
    evaluator.dataset_meta = dataset.metainfo
    items = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = pseudo_collate(items[start:start + batch_size])
            evaluator.process(model.test_step(batch), batch)
    return evaluator.evaluate(len(dataset))


@pytest.mark.parametrize('config,source', [('saol_demo', 'attention'),
                                           ('saol_demo', 'class'),
                                           ('gapfc_demo', 'cam'),
                                           ('gapfc_demo', 'gradcam++')])
def test_runner_gives_the_numbers_of_a_plain_loop(tmp_path, checkpoints,
                                                  config, source):
    out = tmp_path / 'metrics.json'
    metrics = main([
        f'configs/{config}.py', checkpoints[config], '--map', source,
        '--split', 'val', '--num', '12', '--batch-size', '5', '--thr',
        '0.3', '--out', str(out), '--work-dir', str(tmp_path)])
    assert set(metrics) == KEYS
    assert json.loads(out.read_text()) == pytest.approx(metrics)
    # Same model, batches and metric code: the same numbers.
    assert metrics == loop_metrics(config, checkpoints[config], source,
                                   num=12, batch_size=5, threshold=0.3)
    # Threshold 0.3 is on the sweep, so MaxBoxAcc bounds GT-known loc,
    # which bounds top-1 loc.
    assert metrics['wsol/max_box_acc'] >= metrics['wsol/gt_known_loc'] >= \
        metrics['wsol/top1_loc']
    # A Runner run: its log and config in the work dir.
    assert glob.glob(str(tmp_path / '*' / '*.log'))
    assert glob.glob(str(tmp_path / '*' / 'vis_data' / 'config.py'))


def test_uniform_attention_known_answers(tmp_path, checkpoints):
    """A fresh SAOL model has uniform attention (zero-initialised): the
    protocol normalises a constant map to zeros, which keeps no pixel at
    any threshold, so the estimated box is (0, 0, 0, 0), the pixel at the
    origin, and no digit's box matches it (every box metric is 0); the
    map's first maximum is the origin (pointing game: the boxes that hold
    it). A known answer for the whole chain (config, model, maps, Runner,
    metric); the IoUs are set through --cfg-options."""
    metrics = main([
        'configs/saol_demo.py', checkpoints['uniform'], '--map', 'attention',
        '--split', 'val', '--num-images', '24', '--work-dir', str(tmp_path),
        '--cfg-options', 'test_evaluator.1.iou_thr=0.2',
        'test_evaluator.1.iou_thrs=(0.15, 0.25)'])
    for key in ('max_box_acc', 'max_box_acc_v2', 'max_box_acc_v2_iou15',
                'max_box_acc_v2_iou25', 'gt_known_loc', 'top1_loc'):
        assert metrics[f'wsol/{key}'] == 0.0
    digits = DATASETS.build(dict(type='DigitsCanvas', split='val',
                                 indices=24))
    boxes = np.stack([digits.get_data_info(i)['gt_bbox']
                      for i in range(24)])
    assert metrics['wsol/peak_in_box'] == pytest.approx(100 * np.mean(
        (boxes[:, 0] * 224 // 40 == 0) & (boxes[:, 1] * 224 // 40 == 0)))


def test_config_rewrite():
    cfg = wsol_config(demo_cfg('gapfc_demo'), map='cam', split='val', num=7,
                      batch_size=3, threshold=0.4)
    assert cfg.model.head.type == 'CAMHead' and cfg.model.neck is None
    assert cfg.model.head.with_maps and cfg.model.head.maps_topk == 10
    assert cfg.test_dataloader.dataset.split == 'val'
    assert cfg.test_dataloader.dataset.indices == 7
    assert cfg.test_dataloader.batch_size == 3
    assert cfg.test_evaluator == [
        dict(type='Accuracy', topk=(1, )),
        dict(type='WSOLMetric', map='class', threshold=0.4)]
    grad = wsol_config(demo_cfg('gapfc_demo'), map='gradcam')
    assert grad.model.type == 'GradCAMClassifier'
    assert grad.model.cam_method == 'gradcam'


@pytest.mark.parametrize('config,wrong', [('saol_demo', 'cam'),
                                          ('gapfc_demo', 'attention'),
                                          ('saol_demo', 'gradcam')])
def test_wrong_map_for_the_head_is_explained(config, wrong):
    with pytest.raises(ValueError, match='map|stock ImageClassifier'):
        wsol_config(demo_cfg(config), map=wrong)
