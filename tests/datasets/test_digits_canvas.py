"""The embedded demo data set."""
import numpy as np
import pytest

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
