"""The WSOL metadata format: writer and reader round trip, the files as the
benchmark ships them (no final newline, ignore file on the first line
only), and one sentence naming file and line for bad metadata."""
import os.path as osp

import numpy as np
import pytest
from mmpretrain.registry import DATASETS
from PIL import Image

from mmsaol.datasets import (
    WSOLMetadataError,
    WSOLRecord,
    read_wsol_metadata,
    write_wsol_metadata,
)

BOX_RECORDS = [
    WSOLRecord('001.a/x_1.jpg', 0, (64, 48), [(4, 6, 34, 26)]),
    WSOLRecord('002.b/y_2.jpg', 1, (50, 70), [(0, 0, 49, 69),
                                              (10, 2, 30, 42)]),
]


def test_write_then_read_boxes(tmp_path):
    folder = write_wsol_metadata(str(tmp_path / 'CUB'), 'test', BOX_RECORDS)
    assert folder == str(tmp_path / 'CUB' / 'test')
    assert (tmp_path / 'CUB' / 'test' / 'localization.txt').read_text() == (
        '001.a/x_1.jpg,4,6,34,26\n002.b/y_2.jpg,0,0,49,69\n'
        '002.b/y_2.jpg,10,2,30,42\n')
    assert read_wsol_metadata(folder) == BOX_RECORDS


def test_reads_masks_as_published_without_final_newline(tmp_path):
    folder = tmp_path / 'val'
    folder.mkdir()
    (folder / 'image_ids.txt').write_text('val/c/a.jpg\nval/c/b.jpg')
    (folder / 'class_labels.txt').write_text('val/c/a.jpg,3\nval/c/b.jpg,0')
    (folder / 'image_sizes.txt').write_text('')
    (folder / 'localization.txt').write_text(
        'val/c/a.jpg,val/c/a_m1.png,val/c/a_ignore.png\n'
        'val/c/a.jpg,val/c/a_m2.png,\n'
        'val/c/b.jpg,val/c/b_m1.png,val/c/b_ignore.png')
    a, b = read_wsol_metadata(str(folder))
    assert a == WSOLRecord('val/c/a.jpg', 3, None, [],
                           ['val/c/a_m1.png', 'val/c/a_m2.png'],
                           'val/c/a_ignore.png')
    assert b.masks == ['val/c/b_m1.png'] and b.label == 0
    # The writer writes the same format back.
    out = write_wsol_metadata(str(tmp_path / 'copy'), 'val', [a, b])
    assert read_wsol_metadata(out) == [a, b]


@pytest.mark.parametrize('name,text,match', [
    ('localization.txt', '001.a/x_1.jpg,4,6,64,26\n',
     r'localization.txt, line 1: box \(4, 6, 64, 26\) lies outside the '
     r'64x48 image'),
    ('localization.txt', '001.a/x_1.jpg,4,6,3,26\n',
     'localization.txt, line 1: box .* is not'),
    ('localization.txt', '003.c/z.jpg,1,1,2,2\n',
     "localization.txt, line 1: image id '003.c/z.jpg' is not among"),
    ('class_labels.txt', '001.a/x_1.jpg,0\n001.a/x_1.jpg,one\n',
     'class_labels.txt, line 2: the label must be integers'),
    ('class_labels.txt', '001.a/x_1.jpg,0\n',
     "class_labels.txt has no label for image id '002.b/y_2.jpg'"),
    ('image_ids.txt', '001.a/x_1.jpg\n001.a/x_1.jpg\n',
     "image_ids.txt, line 2: image id '001.a/x_1.jpg' is repeated"),
])
def test_bad_metadata_names_file_and_line(tmp_path, name, text, match):
    folder = write_wsol_metadata(str(tmp_path), 'test', BOX_RECORDS)
    with open(osp.join(folder, name), 'w') as f:
        f.write(text)
    with pytest.raises(WSOLMetadataError, match=match):
        read_wsol_metadata(folder)


def test_writer_refuses_what_the_reader_would(tmp_path):
    with pytest.raises(WSOLMetadataError, match='outside the 10x10 image'):
        write_wsol_metadata(str(tmp_path), 'x', [
            dict(image_id='a.jpg', label=0, size=(10, 10),
                 boxes=[(0, 0, 10, 9)])])


def test_dataset_samples_and_missing_files(tmp_path):
    images = tmp_path / 'images'
    for r in BOX_RECORDS:
        (images / osp.dirname(r.image_id)).mkdir(parents=True)
        Image.fromarray(np.zeros((r.size[1], r.size[0], 3), np.uint8)).save(
            images / r.image_id)
    meta = write_wsol_metadata(str(tmp_path / 'meta'), 'test', BOX_RECORDS)
    dataset = DATASETS.build(dict(type='WSOLMetadataDataset',
                                  data_root=str(images), metadata_root=meta))
    assert len(dataset) == 2 and dataset.CLASSES == ('0', '1')
    info = dataset.get_data_info(1)
    assert info['gt_label'] == 1 and info['image_id'] == '002.b/y_2.jpg'
    np.testing.assert_array_equal(info['gt_bbox'],
                                  [[0, 0, 49, 69], [10, 2, 30, 42]])
    (images / BOX_RECORDS[1].image_id).unlink()
    with pytest.raises(WSOLMetadataError,
                       match=r"image_ids.txt, line 2: image '.*y_2.jpg' does "
                       'not exist'):
        DATASETS.build(dict(type='WSOLMetadataDataset',
                            data_root=str(images), metadata_root=meta))


def test_dataset_missing_mask_file(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(b'')
    (tmp_path / 'a_m.png').write_bytes(b'')
    meta = write_wsol_metadata(str(tmp_path / 'meta'), 'val', [
        WSOLRecord('a.jpg', 0, masks=['a_m.png'], ignore='a_ignore.png')])
    with pytest.raises(WSOLMetadataError,
                       match=r"localization.txt, line 1 or later: mask file "
                       ".*a_ignore.png' does not exist"):
        DATASETS.build(dict(type='WSOLMetadataDataset',
                            data_root=str(tmp_path), metadata_root=meta))


def test_image_folder_of_ones_own(tmp_path):
    """No metadata files: class folders give the labels (sorted names), a
    localization.txt next to them the boxes."""
    for rel in ('cat/a.jpg', 'cat/sub/b.png', 'dog/c.jpg'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (20, 10)).save(tmp_path / rel)
    (tmp_path / 'dog' / 'notes.txt').write_text('not an image')
    (tmp_path / 'localization.txt').write_text(
        'cat/a.jpg,1,2,5,6\ndog/c.jpg,0,0,19,9\ndog/c.jpg,3,3,4,4')
    dataset = DATASETS.build(dict(type='WSOLMetadataDataset',
                                  data_root=str(tmp_path)))
    assert dataset.CLASSES == ('cat', 'dog') and len(dataset) == 3
    infos = [dataset.get_data_info(i) for i in range(3)]
    assert [i['image_id'] for i in infos] == ['cat/a.jpg', 'cat/sub/b.png',
                                              'dog/c.jpg']
    assert [i['gt_label'] for i in infos] == [0, 0, 1]
    assert infos[1]['gt_bbox'].shape == (0, 4)
    np.testing.assert_array_equal(infos[2]['gt_bbox'],
                                  [[0, 0, 19, 9], [3, 3, 4, 4]])
    (tmp_path / 'localization.txt').write_text('cat/zz.jpg,1,2,5,6\n')
    with pytest.raises(WSOLMetadataError, match="line 1: image id "
                       "'cat/zz.jpg' is not among the images"):
        DATASETS.build(dict(type='WSOLMetadataDataset',
                            data_root=str(tmp_path)))
