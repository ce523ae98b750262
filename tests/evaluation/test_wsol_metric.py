"""WSOLMetric on hand-made predictions with known answers (end to end on
the demo data set: tests/tools/test_eval_wsol.py)."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample

GT = [10, 10, 20, 20]          # in the 40x40 network input frame
ORI = (80, 120)                # the loaded image: boxes scaled x3, y2


def block(*boxes_values):
    """A 40x40 map: value v inside each (x1, y1, x2, y2) box."""
    heatmap = torch.zeros(40, 40)
    for (x1, y1, x2, y2), v in boxes_values:
        heatmap[y1:y2, x1:x2] = v
    return heatmap


def to_ori(box):
    x1, y1, x2, y2 = box
    return [x1 * 3, y1 * 2, x2 * 3, y2 * 2]


def sample(gt, pred, maps, gt_boxes=(GT, ), num_classes=3):
    """A prediction with class maps at image resolution (upsampling is then
    the identity, so every box is known exactly)."""
    score = torch.full((num_classes, ), 0.1)
    score[pred] = 0.8
    labels = torch.tensor(sorted(maps, key=lambda c: c != pred))
    data = DataSample(metainfo=dict(
        img_shape=(40, 40), ori_shape=ORI,
        gt_bbox=np.array([to_ori(b) for b in gt_boxes], np.float32)))
    data.set_gt_label(gt).set_pred_score(score).set_pred_label(pred)
    data.set_field(torch.stack([maps[int(c)] for c in labels]), 'class_maps')
    data.set_field(labels, 'class_map_labels')
    data.set_field(maps[gt] / maps[gt].sum().clamp(min=1), 'attention_map')
    return data


def known_samples():
    far = block(([25, 25, 35, 35], 1.0))
    return [
        # 1: exact box (one of two GT boxes), right class.
        sample(0, 0, {0: block((GT, 1.0)), 1: far},
               gt_boxes=(GT, [30, 0, 40, 8])),
        # 2: true class's map exact, but the class is wrong.
        sample(0, 1, {0: block((GT, 1.0)), 1: far}),
        # 3: box 10 x 15 around the 10 x 10 GT box: IoU 2/3.
        sample(1, 1, {1: block(([10, 10, 20, 25], 1.0)), 0: far}),
        # 4: GT box at half strength + a small hot spot: right up to
        #    threshold 0.5, then only the hot spot survives.
        sample(0, 0, {0: block((GT, 0.5), ([30, 30, 33, 33], 1.0)),
                      2: far}),
    ]


def evaluate(samples, **kwargs):
    metric = METRICS.build(dict(type='WSOLMetric', **kwargs))
    evaluator = Evaluator([metric])
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def test_known_answers():
    metrics = evaluate(known_samples())
    assert metrics['wsol/gt_known_loc'] == pytest.approx(100.0)
    assert metrics['wsol/top1_loc'] == pytest.approx(75.0)
    # Threshold 0 keeps the whole image (IoU 1/16): the sweep's best is at
    # the first positive threshold.
    assert metrics['wsol/max_box_acc'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_thr'] == pytest.approx(0.05)
    assert metrics['wsol/max_box_acc_iou30'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_iou50'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_iou70'] == pytest.approx(75.0)
    assert metrics['wsol/max_box_acc_v2'] == pytest.approx(275 / 3)


def test_threshold_and_iou_options():
    high = evaluate(known_samples(), threshold=0.8)
    assert high['wsol/gt_known_loc'] == pytest.approx(75.0)
    assert high['wsol/top1_loc'] == pytest.approx(50.0)
    strict = evaluate(known_samples(), iou_thr=0.7, iou_thrs=(0.7, 0.9))
    assert strict['wsol/gt_known_loc'] == pytest.approx(75.0)
    assert strict['wsol/max_box_acc'] == pytest.approx(75.0)
    assert strict['wsol/max_box_acc_v2'] == pytest.approx((75 + 75) / 2)


def test_attention_map_is_class_agnostic():
    metrics = evaluate(known_samples(), map='attention')
    # Attention = the true class's map here; top-1 still needs the class.
    assert metrics['wsol/gt_known_loc'] == pytest.approx(100.0)
    assert metrics['wsol/top1_loc'] == pytest.approx(75.0)


def test_ori_shape_resolution():
    samples = known_samples()
    for s in samples:
        s.set_metainfo(dict(ori_shape=(40, 40),
                            gt_bbox=np.array([GT], np.float32)))
    metrics = evaluate(samples, resolution='ori_shape')
    assert metrics['wsol/gt_known_loc'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_iou70'] == pytest.approx(75.0)


def test_clear_errors():
    missing_gt_map = known_samples()[:1]
    missing_gt_map[0].class_map_labels = torch.tensor([1, 2])
    with pytest.raises(ValueError, match='maps_topk'):
        evaluate(missing_gt_map)
    no_box = known_samples()[:1]
    no_box[0].set_metainfo(dict(gt_bbox=None))
    with pytest.raises(ValueError, match="'gt_bbox'"):
        evaluate(no_box)
    no_maps = DataSample(metainfo=dict(img_shape=(4, 4), ori_shape=(4, 4),
                                       gt_bbox=np.array(GT)))
    no_maps.set_gt_label(0).set_pred_label(0)
    with pytest.raises(ValueError, match='with_maps=True'):
        evaluate([no_maps])
    with pytest.raises(ValueError, match='attention_map'):
        evaluate([no_maps], map='attention')
    for bad in (dict(map='cam'), dict(threshold=2.0),
                dict(threshold_step=0.0), dict(iou_thrs=(0.5, 1.5)),
                dict(resolution='pad_shape')):
        with pytest.raises(ValueError, match='WSOLMetric'):
            METRICS.build(dict(type='WSOLMetric', **bad))

