"""The clutter canvas generator on a small synthetic Fashion-MNIST stand-in
(idx files written here): seeded, disjoint sources per split, boxes and
masks inside the canvas and consistent, metadata read by the WSOL reader
and the data set type."""
import json

import cv2
import numpy as np
import pytest

from mmsaol.datasets import clutter_canvas as cc
from mmsaol.datasets.fashion_mnist import FASHION_MNIST_FILES
from mmsaol.datasets.wsol_metadata import (
    WSOLMetadataDataset,
    read_wsol_metadata,
)

COUNTS = {'train': 12, 'val': 6, 'test': 6}


def _write_idx(folder, prefix, count, rng):
    """``count`` 28x28 'garments' (a bright rectangle of random size and
    texture, the rest black) and labels 0..9 in turn, as idx files."""
    images = np.zeros((count, 28, 28), np.uint8)
    for image in images:
        x0, y0 = rng.integers(0, 8, size=2)
        x1, y1 = rng.integers(20, 28, size=2)
        image[y0:y1, x0:x1] = rng.integers(60, 255, size=(y1 - y0, x1 - x0))
    labels = (np.arange(count) % 10).astype(np.uint8)
    names = [n for n in FASHION_MNIST_FILES if n.startswith(prefix)]
    (folder / names[0]).write_bytes(bytes(16) + images.tobytes())
    (folder / names[1]).write_bytes(bytes(8) + labels.tobytes())


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fashion-mnist')
    rng = np.random.default_rng(0)
    _write_idx(folder, 'train', 60, rng)
    _write_idx(folder, 't10k', 20, rng)
    return str(folder)


def _prepare(dest, source, seed=0):
    return cc.prepare_clutter_canvas(str(dest), seed=seed, counts=COUNTS,
                                     source=source, val_pool=20)


def test_sources_are_disjoint(source):
    pools = cc.source_pools(0, source, val_pool=20)
    train, val = set(pools['train'][2]), set(pools['val'][2])
    assert len(train) == 40 and len(val) == 20 and not train & val
    assert len(pools['test'][2]) == 20  # the other file: the test set
    images, labels, _ = pools['val']
    data = cc.render_split(images, labels, 6, np.random.default_rng(1))
    for index, clutter in zip(data['objects'], data['clutter']):
        assert 3 <= len(clutter) <= 6 and clutter.max() < len(labels)
        assert (labels[clutter] != labels[index]).all()  # other classes


def test_canvases_boxes_and_masks(tmp_path, source):
    root = _prepare(tmp_path / 'a', source)
    info = json.loads((tmp_path / 'a' / 'clutter_canvas.json').read_text())
    for split, count in COUNTS.items():
        boxed = read_wsol_metadata(f'{root}/metadata/{split}')
        masked = read_wsol_metadata(f'{root}/metadata-masks/{split}')
        assert len(boxed) == len(masked) == count
        for record, with_mask in zip(boxed, masked):
            assert record.image_id.startswith(f'images/{split}/')
            assert record.size == (64, 64) and with_mask.label == record.label
            image = cv2.imread(f'{root}/{record.image_id}',
                               cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(f'{root}/{with_mask.masks[0]}',
                              cv2.IMREAD_UNCHANGED)
            assert image.shape == mask.shape == (64, 64)
            assert set(np.unique(mask)) <= {0, 255}
            (x0, y0, x1, y1), = record.boxes
            # Inclusive box inside the canvas, tight around the mask.
            assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1,
                                                                 y1)
            # The object's longer side: a quarter to a half of the canvas.
            assert 16 - 2 <= max(x1 - x0, y1 - y0) + 1 <= 32
    # Seeded: the same arguments give the same pixels, another seed others.
    again = _prepare(tmp_path / 'b', source)
    other = _prepare(tmp_path / 'c', source, seed=1)
    sha1 = [json.loads(open(f'{r}/clutter_canvas.json').read())['sha1']
            for r in (again, other)]
    assert sha1 == [info['sha1'], sha1[1]] and sha1[1] != info['sha1']
    assert cv2.imread(f'{root}/images/test/00000.png').tobytes() == \
        cv2.imread(f'{again}/images/test/00000.png').tobytes()


def test_data_set_type_reads_it(tmp_path, source):
    root = _prepare(tmp_path / 'a', source)
    dataset = WSOLMetadataDataset(data_root=root,
                                  metadata_root=f'{root}/metadata/val',
                                  test_mode=True)
    assert len(dataset) == COUNTS['val']
    info = dataset.get_data_info(0)
    assert info['gt_bbox'].shape == (1, 4) and 0 <= info['gt_label'] < 10
    masks = WSOLMetadataDataset(data_root=root,
                                metadata_root=f'{root}/metadata-masks/val',
                                test_mode=True)
    assert masks.get_data_info(0)['gt_mask_paths'][0].endswith('.png')


def test_bad_arguments(tmp_path, source):
    with pytest.raises(ValueError, match='object_size'):
        cc.prepare_clutter_canvas(str(tmp_path), object_size=(40, 20),
                                  source=source)
    with pytest.raises(ValueError, match='source images'):
        cc.prepare_clutter_canvas(str(tmp_path), counts=dict(
            train=100, val=1, test=1), source=source, val_pool=20)
