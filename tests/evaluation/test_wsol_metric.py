"""WSOLMetric on hand-made predictions with answers derived on paper (end to
end on the demo data set: tests/tools/test_eval_wsol.py)."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample
from PIL import Image

ORI = (112, 448)  # (h, w) of the loaded image: frame x = x / 2, y = 2 y


def blob_map(*blobs):
    """A 224 x 224 map (the evaluation frame, so resizing is the identity)
    with value v in each inclusive (x0, y0, x1, y1) rectangle."""
    heatmap = torch.zeros(224, 224)
    for (x0, y0, x1, y1), v in blobs:
        heatmap[y0:y1 + 1, x0:x1 + 1] = v
    return heatmap


def to_ori(box):
    x0, y0, x1, y1 = box
    return [2 * x0, y0 / 2, 2 * x1, y1 / 2]


def sample(gt, pred, maps, gt_boxes, num_classes=3, masks=None):
    score = torch.full((num_classes, ), 0.1)
    score[pred] = 0.8
    labels = torch.tensor(sorted(maps, key=lambda c: c != pred))
    meta = dict(img_shape=(224, 224), ori_shape=ORI)
    if masks is None:
        meta['gt_bbox'] = np.array([to_ori(b) for b in gt_boxes], np.float32)
    else:
        meta.update(gt_mask_paths=masks[0], gt_ignore_path=masks[1])
    data = DataSample(metainfo=meta)
    data.set_gt_label(gt).set_pred_score(score).set_pred_label(pred)
    data.set_field(torch.stack([maps[int(c)] for c in labels]), 'class_maps')
    data.set_field(labels, 'class_map_labels')
    data.set_field(maps[gt], 'attention_map')
    return data


EXACT = (60, 50, 129, 99)
FAR = blob_map(((200, 200, 220, 220), 1.0))


def known_samples():
    return [
        # 1: a blob on the ground truth, right class: IoU 3500/3621 (the
        #    estimated box is one pixel larger, x + w and y + h).
        sample(0, 0, {0: blob_map((EXACT, 1.0)), 1: FAR}, [EXACT]),
        # 2: the same true-class map, but the prediction is wrong.
        sample(0, 1, {0: blob_map((EXACT, 1.0)), 1: FAR}, [EXACT]),
        # 3: a large blob and a small one; the ground truth covers the small
        #    one (30 x 30 box, blob 30 x 20): the largest contour misses it,
        #    all contours find it with IoU 630 / 921 = 0.68.
        sample(0, 0, {0: blob_map(((10, 10, 69, 69), 1.0),
                                  ((150, 150, 179, 169), 1.0)), 2: FAR},
               [(150, 150, 179, 179)]),
        # 4: the ground truth is a core at 1.0 in a large 0.5 halo: right
        #    from tau = 0.5 on (IoU 400/441), wrong below.
        sample(0, 0, {0: blob_map(((20, 20, 199, 199), 0.5),
                                  ((100, 100, 119, 119), 1.0)), 2: FAR},
               [(100, 100, 119, 119)]),
    ]


def evaluate(samples, **kwargs):
    metric = METRICS.build(dict(type='WSOLMetric', **kwargs))
    evaluator = Evaluator(metric)
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def test_known_answers():
    metrics = evaluate(known_samples())
    # V1 (largest contour, IoU 0.5): images 1 and 2 always, 4 from 0.5 on.
    assert metrics['wsol/max_box_acc'] == pytest.approx(75.0)
    assert metrics['wsol/max_box_acc_thr'] == pytest.approx(0.5)
    # V2 (all contours): image 3 counts at IoU 0.3 and 0.5, not 0.7.
    assert metrics['wsol/max_box_acc_v2_iou30'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_v2_iou50'] == pytest.approx(100.0)
    assert metrics['wsol/max_box_acc_v2_iou70'] == pytest.approx(75.0)
    assert metrics['wsol/max_box_acc_v2'] == pytest.approx(275 / 3)
    # At the fixed threshold 0.2: images 1 and 2 (GT-known), 1 (top-1).
    assert metrics['wsol/gt_known_loc'] == pytest.approx(50.0)
    assert metrics['wsol/top1_loc'] == pytest.approx(25.0)
    # The first maximum of image 3 lies in the large blob (raster order).
    assert metrics['wsol/peak_in_box'] == pytest.approx(75.0)
    # With the threshold above 0.5 image 4 is right at the fixed threshold.
    high = evaluate(known_samples(), threshold=0.6)
    assert high['wsol/gt_known_loc'] == pytest.approx(75.0)
    # The attention map is the true class's map here: same box metrics.
    attention = evaluate(known_samples(), map='attention')
    assert attention['wsol/max_box_acc'] == pytest.approx(75.0)
    assert attention['wsol/max_box_acc_v2'] == pytest.approx(275 / 3)


def test_pxap_from_mask_files(tmp_path):
    # Foreground: the left half of the image; ignore: a band of the right
    # half. The map is 1 on the left half and 0.5 on the ignore band: with
    # the band left out the ranking is perfect.
    height, width = ORI
    fg = np.zeros((height, width), np.uint8)
    fg[:, :width // 2] = 255
    ignore = np.zeros_like(fg)
    ignore[:, width // 2:width // 2 + 40] = 255
    Image.fromarray(fg).save(tmp_path / 'fg.png')
    Image.fromarray(ignore).save(tmp_path / 'ignore.png')
    heatmap = torch.zeros(224, 224)
    heatmap[:, :112] = 1.0
    heatmap[:, 112:132] = 0.5
    masks = ([str(tmp_path / 'fg.png')], str(tmp_path / 'ignore.png'))
    good = sample(0, 0, {0: heatmap}, None, masks=masks)
    assert evaluate([good])['wsol/pxap'] == pytest.approx(100.0)
    # No ignore mask, and the band scored above the object: its 224 x 20
    # background pixels rank first.
    heatmap[:, 112:132] = 1.0
    heatmap[:, :112] = 0.5
    ranked = sample(0, 0, {0: heatmap}, None, masks=(masks[0], None))
    # The band (4480 px) ranks first with no true positive, then the
    # foreground (25088 px): precision 25088 / 29568 at recall 1.
    assert evaluate([ranked])['wsol/pxap'] == pytest.approx(
        100 * 25088 / 29568)


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
                                       gt_bbox=np.array(EXACT)))
    no_maps.set_gt_label(0).set_pred_label(0)
    with pytest.raises(ValueError, match='with_maps=True'):
        evaluate([no_maps])
    with pytest.raises(ValueError, match='attention_map'):
        evaluate([no_maps], map='attention')
    for bad in (dict(map='cam'), dict(threshold=2.0),
                dict(threshold_interval=0.0), dict(iou_thrs=(0.5, 1.5)),
                dict(frame_size=0)):
        with pytest.raises(ValueError, match='WSOLMetric'):
            METRICS.build(dict(type='WSOLMetric', **bad))
