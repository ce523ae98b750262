"""tools/eval_wsol.py (Runner.test with WSOLMetric) on the demo validation
split: the same numbers as a plain loop over the model, the files of a
Runner run, and known answers for a model with uniform attention."""
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

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
KEYS = {'accuracy/top1', 'wsol/gt_known_loc', 'wsol/top1_loc',
        'wsol/max_box_acc', 'wsol/max_box_acc_thr', 'wsol/max_box_acc_iou30',
        'wsol/max_box_acc_iou50', 'wsol/max_box_acc_iou70',
        'wsol/max_box_acc_v2', 'wsol/peak_in_box'}


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
    model = get_model(maps_config(cfg, topk='all'), checkpoint)
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
                                           ('gapfc_demo', 'cam')])
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
    """A fresh SAOL model has uniform attention (zero-initialised), so its
    box is the whole 40x40 canvas at every threshold and its IoU with each
    digit's box is that box's area / 1600 (0.12 to 0.29 here): a known
    answer for the whole chain (config, model, maps, Runner, metric).
    The metric's IoUs are set through --cfg-options."""
    ious = (0.15, 0.2, 0.25)
    metrics = main([
        'configs/saol_demo.py', checkpoints['uniform'], '--map', 'attention',
        '--split', 'val', '--num-images', '24', '--work-dir', str(tmp_path),
        '--cfg-options', 'test_evaluator.1.iou_thr=0.2',
        f'test_evaluator.1.iou_thrs={ious}'])
    digits = DATASETS.build(dict(type='DigitsCanvas', split='val',
                                 indices=24))
    boxes = np.stack([digits.get_data_info(i)['gt_bbox']
                      for i in range(24)])
    iou = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1600
    expected = {t: 100 * np.mean(iou >= t) for t in ious}
    assert 0 < expected[0.25] < expected[0.15] < 100
    for t in ious:
        assert metrics[f'wsol/max_box_acc_iou{round(t * 100)}'] == \
            pytest.approx(expected[t])
    assert metrics['wsol/gt_known_loc'] == pytest.approx(expected[0.2])
    assert metrics['wsol/max_box_acc'] == pytest.approx(expected[0.2])
    # uniform attention: the maximum is the first pixel, (0, 0)
    assert metrics['wsol/peak_in_box'] == pytest.approx(100 * np.mean(
        (boxes[:, 0] <= 0.5) & (boxes[:, 1] <= 0.5)))


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


@pytest.mark.parametrize('config,wrong', [('saol_demo', 'cam'),
                                          ('gapfc_demo', 'attention')])
def test_wrong_map_for_the_head_is_explained(config, wrong):
    with pytest.raises(ValueError, match='map='):
        wsol_config(demo_cfg(config), map=wrong)
