"""CUBWithBoxes on a tiny fake CUB-200-2011 folder, and the CUB WSOL
config on the same images described in the WSOL metadata format, end to
end through tools/test.py and mmsaol wsol."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmpretrain.apis import get_model
from mmpretrain.registry import DATASETS, METRICS
from PIL import Image

import mmsaol.evaluation  # noqa: F401  (registers WSOLMetric)
from mmsaol.apis import eval_wsol as wsol_tool
from mmsaol.apis import test as test_tool
from mmsaol.datasets import WSOLRecord, write_wsol_metadata

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs')
# (id, class folder, class id, is_train, width, height, box x y w h)
IMAGES = [
    (1, '001.Black_footed_Albatross', 1, 1, 64, 48, (4, 6, 30, 20)),
    (2, '001.Black_footed_Albatross', 1, 0, 50, 70, (10.5, 2, 20, 40)),
    (3, '002.Laysan_Albatross', 2, 1, 40, 40, (0, 0, 40, 40)),
    (4, '002.Laysan_Albatross', 2, 0, 80, 60, (30, 20, 25, 15)),
    (5, '003.Sooty_Albatross', 3, 0, 45, 45, (5, 5, 10, 10)),
]


@pytest.fixture(scope='module')
def cub_root(tmp_path_factory):
    """A CUB_200_2011 folder in the standard layout with 5 real images."""
    root = tmp_path_factory.mktemp('CUB_200_2011')
    rng = np.random.default_rng(0)
    lines = {k: [] for k in ('images', 'image_class_labels',
                             'train_test_split', 'bounding_boxes')}
    for image_id, folder, label, train, w, h, box in IMAGES:
        rel = f'{folder}/{folder.split(".")[1]}_{image_id:04d}.jpg'
        (root / 'images' / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / 'images' / rel)
        lines['images'].append(f'{image_id} {rel}')
        lines['image_class_labels'].append(f'{image_id} {label}')
        lines['train_test_split'].append(f'{image_id} {train}')
        lines['bounding_boxes'].append(
            f'{image_id} ' + ' '.join(f'{v:.1f}' for v in box))
    for name, rows in lines.items():
        (root / f'{name}.txt').write_text('\n'.join(rows) + '\n')
    (root / 'classes.txt').write_text(
        '1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n'
        '3 003.Sooty_Albatross\n')
    return str(root)


def test_parses_boxes_labels_splits_and_classes(cub_root):
    train = DATASETS.build(dict(type='CUBWithBoxes', data_root=cub_root,
                                split='train'))
    test = DATASETS.build(dict(type='CUBWithBoxes', data_root=cub_root,
                               split='test'))
    assert len(train) == 2 and len(test) == 3
    assert test.CLASSES == ('Black_footed_Albatross', 'Laysan_Albatross',
                            'Sooty_Albatross')
    expected = [row for row in IMAGES if not row[3]]
    for i, (image_id, folder, label, *_, (x, y, bw, bh)) in enumerate(
            expected):
        info = test.get_data_info(i)
        assert info['gt_label'] == label - 1
        assert info['img_path'].endswith(f'{image_id:04d}.jpg')
        assert folder in info['img_path']
        np.testing.assert_allclose(info['gt_bbox'], [x, y, x + bw, y + bh])
        assert info['gt_bbox'].dtype == np.float32
    named = DATASETS.build(dict(type='CUBWithBoxes', data_root=cub_root,
                                metainfo=dict(classes=('a', 'b', 'c'))))
    assert named.CLASSES == ('a', 'b', 'c')


def test_clear_errors(cub_root, tmp_path):
    with pytest.raises(ValueError, match='split'):
        DATASETS.build(dict(type='CUBWithBoxes', data_root=cub_root,
                            split='val'))
    broken = tmp_path / 'broken'
    broken.mkdir()
    for name in ('images', 'image_class_labels', 'train_test_split',
                 'classes'):
        (broken / f'{name}.txt').write_text(
            open(osp.join(cub_root, f'{name}.txt')).read())
    (broken / 'images').symlink_to(osp.join(cub_root, 'images'))
    (broken / 'bounding_boxes.txt').write_text('1 4 6 30 20\n')
    with pytest.raises(ValueError, match='no box for image id 3'):
        DATASETS.build(dict(type='CUBWithBoxes', data_root=str(broken)))
    (broken / 'bounding_boxes.txt').write_text('1 4 6 30\n')
    with pytest.raises(ValueError, match='<image id> <x> <y>'):
        DATASETS.build(dict(type='CUBWithBoxes', data_root=str(broken)))


@pytest.fixture(scope='module')
def cub_metadata(cub_root, tmp_path_factory):
    """The fake CUB images described in the WSOL benchmark's metadata format
    (its splits train / val / test; val = the training images here), boxes
    x1 = x + w as the benchmark converts CUB's, inside the image."""
    root = tmp_path_factory.mktemp('wsol_metadata')
    splits = {'train': [], 'test': []}
    for image_id, folder, label, train, w, h, (x, y, bw, bh) in IMAGES:
        rel = f'{folder}/{folder.split(".")[1]}_{image_id:04d}.jpg'
        box = (int(x), int(y), min(int(x + bw), w - 1),
               min(int(y + bh), h - 1))
        splits['train' if train else 'test'].append(
            WSOLRecord(rel, label - 1, (w, h), [box]))
    splits['val'] = splits['train']
    for split, records in splits.items():
        write_wsol_metadata(str(root), split, records)
    return str(root)


def data_options(cub_root, metadata, split='test'):
    return [f'{split}_dataloader.dataset.data_root={cub_root}/images',
            f'{split}_dataloader.dataset.metadata_root={metadata}/{split}',
            f'{split}_dataloader.batch_size=2',
            f'{split}_dataloader.num_workers=0']


def test_wsol_config_pipeline_model_and_metric(cub_root, cub_metadata):
    """The CUB WSOL fine-tuning config on the metadata folder: the test
    pipeline keeps the boxes in original pixels, the stride-1 last stage
    gives 14x14 maps at 224 px, and WSOLMetric scores the class maps."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'resnet50_saol_cub-wsol.py'))
    cfg.merge_from_dict(dict(option.split('=', 1) for option in
                             data_options(cub_root, cub_metadata)))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(dataset) == 3
    item = dataset[2]          # test image id 5, 45x45
    assert item['inputs'].shape == (3, 224, 224)
    assert item['data_samples'].ori_shape == (45, 45)
    np.testing.assert_allclose(item['data_samples'].gt_bbox, [[5, 5, 15, 15]])

    model = get_model(cfg)
    batch = dict(inputs=[item['inputs']],
                 data_samples=[item['data_samples']])
    with torch.no_grad():
        samples = model.test_step(batch)
    assert samples[0].attention_map.shape == (14, 14)
    assert samples[0].class_maps.shape == (200, 14, 14)
    evaluator = Evaluator([METRICS.build(m) for m in cfg.test_evaluator])
    evaluator.process(samples, batch)
    metrics = evaluator.evaluate(1)
    assert 0 <= metrics['wsol/max_box_acc'] <= 100
    assert 'accuracy/top5' in metrics


def test_wsol_config_end_to_end_through_the_tools(cub_root, cub_metadata,
                                                  tmp_path):
    """tools/test.py and mmsaol wsol on the metadata folder with a random
    checkpoint: the standard metrics, and the same numbers from both (the
    config's test evaluator is the tool's: class maps, interval 0.01)."""
    config = osp.join(CONFIGS, 'resnet50_saol_cub-wsol.py')
    torch.manual_seed(0)
    model = get_model(Config.fromfile(config))
    torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
    checkpoint = str(tmp_path / 'random.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    options = data_options(cub_root, cub_metadata)
    tested = test_tool.main([config, checkpoint, '--work-dir',
                             str(tmp_path / 'test'), '--cfg-options',
                             *options])
    scored = wsol_tool.main([config, checkpoint, '--work-dir',
                             str(tmp_path / 'wsol'), '--cfg-options',
                             *options])
    for key in ('max_box_acc', 'max_box_acc_thr', 'max_box_acc_v2',
                'max_box_acc_v2_iou30', 'max_box_acc_v2_iou50',
                'max_box_acc_v2_iou70', 'gt_known_loc', 'top1_loc',
                'peak_in_box'):
        assert tested[f'wsol/{key}'] == pytest.approx(scored[f'wsol/{key}'])
    # 0.2 (GT-known loc) is on the sweep: MaxBoxAcc bounds it.
    assert 100 >= scored['wsol/max_box_acc'] >= scored['wsol/gt_known_loc']
    assert scored['wsol/max_box_acc_v2_iou30'] >= \
        scored['wsol/max_box_acc_v2_iou70']
