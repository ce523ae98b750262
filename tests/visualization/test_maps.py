"""Drawing SAOL's maps: panels, picture sizes, contact sheets, PNG files."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from PIL import Image

from mmsaol.visualization import (
    contact_sheet,
    display_image,
    render_maps,
    sample_panels,
    save_png,
)

CLASSES = ('cat', 'dog', 'bird')


def saol_sample(with_attention=True):
    sample = DataSample(metainfo=dict(img_shape=(30, 40),
                                      ori_shape=(60, 80),
                                      gt_bbox=np.array([10, 10, 50, 40.]))
                        ).set_gt_label(2)
    sample.set_pred_score(torch.tensor([0.2, 0.1, 0.7]))
    if with_attention:
        sample.set_field(torch.softmax(torch.randn(16), 0).view(4, 4),
                         'attention_map')
    sample.set_field(torch.rand(2, 4, 4), 'class_maps')
    sample.set_field(torch.tensor([2, 0]), 'class_map_labels')
    return sample


def test_display_image_layouts():
    chw = torch.arange(2 * 3 * 5, dtype=torch.uint8).view(3, 2, 5)
    rgb = display_image(chw)
    assert rgb.shape == (2, 5, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(display_image(chw, bgr=True),
                                  rgb[:, :, ::-1])
    gray = display_image(torch.full((1, 4, 4), 7, dtype=torch.uint8))
    assert gray.shape == (4, 4, 3) and (gray == 7).all()
    assert display_image(np.zeros((6, 6))).shape == (6, 6, 3)


def test_panels_titles_and_order():
    panels = sample_panels(saol_sample(), CLASSES)
    assert [t for t, _ in panels] == ['attention', 'bird 0.70', 'cat 0.20']
    assert [t for t, _ in sample_panels(saol_sample(), topk=1)] == \
        ['attention', '2 0.70']
    cam_only = sample_panels(saol_sample(with_attention=False), CLASSES)
    assert [t for t, _ in cam_only] == ['bird 0.70', 'cat 0.20']
    with pytest.raises(ValueError, match='with_maps=True'):
        sample_panels(DataSample())


@pytest.mark.parametrize('topk,panels', [(None, 4), (1, 3)])
def test_render_maps_size(topk, panels):
    image = np.zeros((30, 40, 3), np.uint8)
    picture = render_maps(image, saol_sample(), CLASSES, topk=topk,
                          title='x', box_thr=0.5, panel_px=100)
    assert picture.dtype == np.uint8
    assert picture.shape == (125, panels * 100, 3)
    assert picture.std() > 0     # something was drawn


def test_contact_sheet_tiles_and_png(tmp_path):
    pictures = [np.full((10, 20, 3), v, np.uint8) for v in (0, 50, 100)]
    sheet = contact_sheet(pictures, columns=2, pad=2)
    assert sheet.shape == (2 * 12 + 2, 2 * 22 + 2, 3)
    np.testing.assert_array_equal(sheet[2:12, 24:44], 50)
    np.testing.assert_array_equal(sheet[14:24, 2:22], 100)
    np.testing.assert_array_equal(sheet[14:24, 24:44], 255)   # empty cell
    path = str(tmp_path / 'sheet.png')
    save_png(sheet, path)
    with Image.open(path) as image:
        assert image.format == 'PNG'
        assert image.size == (sheet.shape[1], sheet.shape[0])
        np.testing.assert_array_equal(np.asarray(image.convert('RGB')),
                                      sheet)
    with pytest.raises(ValueError, match='at least one'):
        contact_sheet([])
