"""Drawing SAOL's maps: panels, colour scales, picture sizes, contact
sheets, PNG files."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from PIL import Image

from mmsaol.visualization import (
    SCALES,
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


def test_panels_titles_kinds_and_order():
    panels = sample_panels(saol_sample(), CLASSES)
    assert [p.title for p in panels] == ['attention', 'bird 0.70',
                                         'cat 0.20']
    assert [p.kind for p in panels] == ['attention', 'probability',
                                        'probability']
    assert [p.title for p in sample_panels(saol_sample(), topk=1)] == \
        ['attention', '2 0.70']
    cam_only = sample_panels(saol_sample(with_attention=False), CLASSES)
    assert [p.title for p in cam_only] == ['bird 0.70', 'cat 0.20']
    assert {p.kind for p in cam_only} == {'cam'}
    with pytest.raises(ValueError, match='with_maps=True'):
        sample_panels(DataSample())


# (scale, SAOL sample?) -> colour bars: the class maps' scale, and with
# 'shared' the attention's own.
@pytest.mark.parametrize('topk,panels', [(None, 4), (1, 3)])
@pytest.mark.parametrize('scale,attention,bars', [
    ('shared', True, 2), ('per-map', True, 1), ('shared', False, 1)])
def test_render_maps_size(topk, panels, scale, attention, bars):
    image = np.zeros((30, 40, 3), np.uint8)
    picture = render_maps(image, saol_sample(attention), CLASSES, topk=topk,
                          title='x', box_thr=0.5, panel_px=100, scale=scale)
    panels -= not attention
    assert picture.dtype == np.uint8
    assert picture.shape == (125, panels * 100 + bars * 40, 3)
    assert picture.std() > 0     # something was drawn
    with pytest.raises(ValueError, match='scale'):
        render_maps(image, saol_sample(), scale='global')


def two_class_sample(values, attention=True):
    """Two class maps at image resolution, the same block with the given
    peak values (upsampling is the identity, every value exact)."""
    block = torch.zeros(40, 40)
    block[10:30, 5:25] = 1.0
    sample = DataSample(metainfo=dict(img_shape=(40, 40)))
    sample.set_pred_score(torch.tensor(values))
    sample.set_field(torch.stack([block * v for v in values]), 'class_maps')
    sample.set_field(torch.tensor([0, 1]), 'class_map_labels')
    if attention:
        sample.set_field(block / block.sum(), 'attention_map')
    return sample


def map_pixels(picture, index, panel_px=100):
    """The map area of panel ``index`` (0 is the image), without titles
    and margins."""
    height = picture.shape[0]
    top = round(height * (1 - 0.78)) + 2
    left = index * panel_px
    return picture[top:height - 2, left + 3:left + panel_px - 3].astype(int)


@pytest.mark.parametrize('attention', [True, False])
def test_shared_scale_shows_how_probable_a_class_is(attention):
    """A class at 0.02 and one at 0.9 with the same map shape: per map
    (min-max) they look the same; on the shared scale the 0.02 map is cold
    and the 0.9 map is drawn as per map (its peak is the scale's top)."""
    image = np.zeros((40, 40, 3), np.uint8)
    sample = two_class_sample([0.9, 0.02], attention)
    first = 1 + attention   # panel of the 0.9 class map
    # The attention's colour bar sits between it and the class maps.
    shift = 40 if attention else 0
    per_map = render_maps(image, sample, panel_px=100, scale='per-map')
    shared = render_maps(image, sample, panel_px=100, scale='shared')
    np.testing.assert_array_equal(map_pixels(per_map, first),
                                  map_pixels(per_map, first + 1))
    hot = map_pixels(shared[:, shift:], first)
    cold = map_pixels(shared[:, shift:], first + 1)
    np.testing.assert_array_equal(hot, map_pixels(per_map, first))
    assert (np.abs(hot - cold).max(axis=2) > 50).mean() > 0.1
    assert SCALES == ('shared', 'per-map')


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
