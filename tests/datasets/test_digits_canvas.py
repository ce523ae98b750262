"""The embedded demo data set, its PNG cache and the demo pipelines."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose, LoadImageFromFile
from mmengine.config import Config
from mmpretrain.apis import ImageClassificationInferencer, get_model
from mmpretrain.registry import DATASETS, TRANSFORMS

from mmsaol.datasets import DigitsCanvas


@pytest.fixture(scope='module')
def splits():
    return (DigitsCanvas(split='train', copies=1),
            DigitsCanvas(split='val', copies=1))


def test_sizes_and_disjoint_sources(splits):
    train, val = splits
    assert len(train) + len(val) == 1797
    assert len(val) == round(1797 * 0.3)
    assert not set(train.source_indices()) & set(val.source_indices())
    assert train.metainfo['classes'] == tuple('0123456789')
    labels = {train.get_data_info(i)['gt_label'] for i in range(len(train))}
    assert labels == set(range(10))


def test_deterministic_and_seeded(splits):
    _, val = splits
    again = DigitsCanvas(split='val', copies=1)
    other = DigitsCanvas(split='val', copies=1, seed=1)
    np.testing.assert_array_equal(val.get_data_info(5)['img'],
                                  again.get_data_info(5)['img'])
    assert not np.array_equal(val.get_data_info(5)['img'],
                              other.get_data_info(5)['img'])
    # test is the validation split under another name
    test = DigitsCanvas(split='test', copies=1)
    np.testing.assert_array_equal(val.get_data_info(3)['img'],
                                  test.get_data_info(3)['img'])


def test_images_and_boxes(splits):
    train, _ = splits
    for i in range(0, len(train), 97):
        info = train.get_data_info(i)
        img, box = info['img'], info['gt_bbox']
        assert img.shape == (40, 40, 3) and img.dtype == np.uint8
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= 40 and 0 <= y1 < y2 <= 40
        assert 8 <= max(x2 - x1, y2 - y1) <= 24
        # the digit is the brightest structure inside its box on average
        inside = img[int(y1):int(y2), int(x1):int(x2), 0].mean()
        assert inside > img[:, :, 0].mean()


def test_pipeline_packs_box_as_metainfo():
    ds = DigitsCanvas(split='val', copies=1, pipeline=[dict(
        type='PackInputs', meta_keys=('sample_idx', 'img_shape',
                                      'gt_bbox'))])
    item = ds[0]
    assert tuple(item['inputs'].shape) == (3, 40, 40)
    assert item['data_samples'].metainfo['gt_bbox'].shape == (4, )


@pytest.mark.parametrize('kwargs, match', [
    (dict(split='holdout'), 'split'),
    (dict(digit_size=(30, 50)), 'digit_size'),
    (dict(val_fraction=1.5), 'val_fraction'),
    (dict(copies=0), 'copies'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsCanvas(**kwargs)


def test_png_cache_holds_the_same_pixels_and_is_written_once(tmp_path):
    root = str(tmp_path / 'cache')
    val = DigitsCanvas(split='val', copies=1, data_root=root)
    paths = [val.get_data_info(i)['img_path'] for i in range(len(val))]
    folder = osp.dirname(paths[0])
    assert osp.dirname(folder) == root and len(os.listdir(folder)) == len(val)
    for i in (0, 7, len(val) - 1):
        info = val.get_data_info(i)
        image = cv2.imread(info['img_path'], cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(image, info['img'])
    # Built again: the same folder, not written again; 'test' is 'val'.
    stamp = os.stat(paths[3]).st_mtime_ns
    test = DigitsCanvas(split='test', copies=1, data_root=root)
    assert test.get_data_info(3)['img_path'] == paths[3]
    assert os.stat(paths[3]).st_mtime_ns == stamp
    # Other canvases, another folder; a folder missing a file is rewritten.
    other = DigitsCanvas(split='val', copies=1, seed=1, data_root=root)
    assert osp.dirname(other.get_data_info(0)['img_path']) != folder
    os.remove(paths[5])
    DigitsCanvas(split='val', copies=1, data_root=root)
    assert osp.isfile(paths[5])
    assert sorted(os.listdir(root)) == sorted(  # no temporary folders left
        {osp.basename(folder),
         osp.basename(osp.dirname(other.get_data_info(0)['img_path']))})
    # Without data_root: in memory only.
    assert 'img_path' not in DigitsCanvas(split='val',
                                          copies=1).get_data_info(0)


def test_file_pipeline_without_data_root_is_explained():
    built = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    for loader in (dict(type='LoadImageFromFile'), built):
        with pytest.raises(ValueError, match='data_root'):
            DigitsCanvas(split='val', pipeline=[loader,
                                                dict(type='PackInputs')])


DEMO = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))), 'configs', 'saol_demo.py')


def demo_config(tmp_path):
    cfg = Config.fromfile(DEMO)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(tmp_path / 'data')
    return cfg


def test_demo_pipelines_read_the_cached_files(tmp_path):
    """The demo configs read image files: the same tensors as the
    rendered canvases."""
    cfg = demo_config(tmp_path)
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset_cfg = cfg[loader].dataset
        dataset_cfg.indices = 3
        dataset = DATASETS.build(dataset_cfg)
        assert isinstance(dataset.pipeline.transforms[0], LoadImageFromFile)
        for i in range(3):
            item, info = dataset[i], dataset.get_data_info(i)
            expected = torch.from_numpy(info['img']).permute(2, 0, 1)
            torch.testing.assert_close(item['inputs'], expected, rtol=0,
                                       atol=0)
            assert item['data_samples'].img_path == info['img_path']


def test_any_image_file_goes_through_the_demo_test_pipeline(tmp_path):
    """An image file of another size is resized to the canvas: what
    mmpretrain's vis_cam.py does with the config (no KeyError 'inputs'),
    and the inferencer predicts on a 2x enlarged canvas exactly as on the
    canvas (a 2x nearest enlargement halves back to the same pixels)."""
    cfg = demo_config(tmp_path)
    canvas = DigitsCanvas(split='val', copies=1).get_data_info(4)['img']
    small, large = str(tmp_path / 'small.png'), str(tmp_path / 'large.png')
    cv2.imwrite(small, canvas)
    cv2.imwrite(large, cv2.resize(canvas, (80, 80),
                                  interpolation=cv2.INTER_NEAREST))
    # vis_cam.py: Compose(test pipeline)({'img_path': IMG})['inputs']
    transforms = Compose([TRANSFORMS.build(t)
                          for t in cfg.test_dataloader.dataset.pipeline])
    assert tuple(transforms({'img_path': large})['inputs'].shape) == \
        (3, 40, 40)
    model = get_model(cfg)
    inferencer = ImageClassificationInferencer(model)
    scores = [inferencer(path)[0]['pred_scores'] for path in (small, large)]
    np.testing.assert_array_equal(scores[0], scores[1])
