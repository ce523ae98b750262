"""The WSOL protocol's pure functions on synthetic maps with known
answers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmsaol.evaluation.wsol import (
    box_iou,
    boxes_from_map,
    image_map,
    largest_component_box,
    localization_ious,
    normalize_map,
    scale_boxes,
    upsample_map,
)


def test_upsample_map_is_bilinear_without_corner_alignment():
    maps = torch.rand(3, 5, 5)
    out = upsample_map(maps, (40, 24))
    assert out.shape == (3, 40, 24)
    expected = F.interpolate(maps[None], size=(40, 24), mode='bilinear',
                             align_corners=False)[0]
    torch.testing.assert_close(out, expected)
    assert upsample_map(maps[0], (40, 24)).shape == (40, 24)
    assert upsample_map(maps[None], (8, 8)).shape == (1, 3, 8, 8)
    # Each output pixel is a convex mix of map cells: range preserved.
    assert out.min() >= maps.min() - 1e-6 and out.max() <= maps.max() + 1e-6
    with pytest.raises(ValueError, match='upsample_map'):
        upsample_map(torch.rand(5), (4, 4))


def test_upsampled_peak_sits_at_the_cell_centre():
    # With align_corners=False, the centre of cell (i, j) of a 4x4 grid on a
    # 40x40 image lies between pixels 10i+4 and 10i+5, which a factor-10
    # bilinear resize places 0.05 of the way to the neighbouring cells.
    grid = torch.zeros(4, 4, dtype=torch.float64)
    grid[1, 2] = 1.0
    up = upsample_map(grid, (40, 40))
    assert up.dtype == torch.float64
    torch.testing.assert_close(up[14:16, 24:26],
                               torch.full((2, 2), 0.95 ** 2,
                                          dtype=torch.float64))
    assert float(up.max()) == pytest.approx(0.95 ** 2)


def test_constant_map_normalises_to_ones_despite_rounding():
    uniform = torch.full((5, 5), 1 / 25)   # e.g. zero-initialised attention
    upsampled = image_map(uniform, (37, 41))
    np.testing.assert_array_equal(normalize_map(upsampled), 1.0)
    box = boxes_from_map(upsampled, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(box, [[0, 0, 41, 37]] * 3)
    ramp = normalize_map(np.array([[2.0, 4.0], [6.0, 10.0]]))
    np.testing.assert_allclose(ramp, [[0, 0.25], [0.5, 1]])


def test_largest_component_box_known_answers():
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:10] = True      # 28 pixels
    mask[10:19, 20:25] = True   # 45 pixels: the largest
    mask[0, 29] = True          # a stray pixel
    np.testing.assert_array_equal(largest_component_box(mask),
                                  [20, 10, 25, 19])
    np.testing.assert_array_equal(largest_component_box(np.zeros((4, 4))),
                                  [0, 0, 0, 0])


def test_components_are_eight_connected():
    mask = np.eye(6, dtype=bool)          # a diagonal line: one component
    mask[0, 5] = mask[1, 5] = True        # two pixels, a separate component
    np.testing.assert_array_equal(largest_component_box(mask),
                                  [0, 0, 6, 6])


def test_boxes_from_map_thresholds_the_normalised_map():
    heatmap = np.zeros((20, 20))
    heatmap[5:15, 2:8] = 10.0      # strong blob, 60 px
    heatmap[1:4, 10:19] = 7.0      # weaker blob, 27 px
    heatmap += 3.0                 # offsets vanish under min-max scaling
    boxes = boxes_from_map(heatmap, [0.0, 0.5, 0.8])
    np.testing.assert_array_equal(boxes, [[0, 0, 20, 20],   # all pixels
                                          [2, 5, 8, 15],    # both, larger
                                          [2, 5, 8, 15]])   # strong only
    # The weak blob wins once it is the larger one.
    heatmap[1:4, 10:19] = 0.0
    heatmap[1:19, 10:19] = 9.0
    np.testing.assert_array_equal(boxes_from_map(heatmap, [0.5]),
                                  [[10, 1, 19, 19]])


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30],
                  [2, 2, 4, 4], [3, 3, 3, 8]])
    np.testing.assert_allclose(box_iou(a, b),
                               [[1.0, 50 / 150, 0.0, 4 / 100, 0.0]])
    assert box_iou(b, a).shape == (5, 1)
    np.testing.assert_allclose(box_iou([0, 0, 0, 0], [0, 0, 0, 0]), [[0.0]])


def test_scale_boxes_between_frames():
    boxes = scale_boxes(np.array([10, 20, 50, 60]), (100, 200), (50, 50))
    np.testing.assert_allclose(boxes, [2.5, 10, 12.5, 30])


def test_localization_ious_whole_protocol():
    # A 4x4 map whose hot cell (1, 2) covers pixels y 10-20, x 20-30 of a
    # 40x40 image.
    grid = torch.zeros(4, 4)
    grid[1, 2] = 1.0
    gt = np.array([[20, 10, 30, 20], [0, 0, 5, 5]])
    ious = localization_ious(grid, (40, 40), gt, [0.0, 0.5, 0.9])
    assert ious[0] == pytest.approx(100 / 1600)      # whole image
    # At 0.5 the box is the cell widened by the bilinear ramp: exact IoU
    # from the box the protocol extracts.
    box = boxes_from_map(image_map(grid, (40, 40)), [0.5])
    assert ious[1] == pytest.approx(box_iou(box, gt[:1])[0, 0])
    assert ious[1] > 0.5
    assert ious[2] < ious[1]


def test_peak_in_boxes_pointing_game():
    from mmsaol.evaluation import peak_in_boxes
    heatmap = np.zeros((4, 4))
    heatmap[1, 2] = 1.0  # cell (row 1, col 2) of 10 px cells on 40x40
    box = np.array([20., 10., 30., 20.])
    assert peak_in_boxes(heatmap, (40, 40), box)
    assert not peak_in_boxes(heatmap, (40, 40), np.array([0., 0., 10., 10.]))
    assert peak_in_boxes(heatmap, (40, 40),
                         np.array([[0., 0., 5., 5.], [18., 8., 32., 22.]]))


def test_opencv_components_and_torchvision_iou_match_the_old_code():
    """The OpenCV / torchvision implementations against the scipy / numpy
    ones they replace, on random maps of the threshold sweep."""
    from mmsaol.evaluation.wsol import (
        _box_iou_numpy,
        _largest_component_box_scipy,
    )
    rng = np.random.default_rng(0)
    thresholds = np.round(np.arange(0.0, 1.0, 0.05), 10)
    for trial in range(300):
        h, w = rng.integers(1, 60, size=2)
        if trial % 3 == 0:    # noisy maps: many small components
            heatmap = rng.random((h, w))
        else:                 # smooth maps: upsampled coarse grids
            grid = torch.as_tensor(rng.random(rng.integers(1, 8, size=2)))
            heatmap = image_map(grid, (h, w))
        normalized = normalize_map(heatmap)
        for t in thresholds:
            mask = normalized >= t
            np.testing.assert_array_equal(
                largest_component_box(mask),
                _largest_component_box_scipy(mask))
        boxes = np.sort(rng.integers(0, 50, size=(7, 2, 2)), axis=1)
        boxes = boxes.transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]]
        gt = boxes[:3]
        np.testing.assert_allclose(box_iou(boxes, gt),
                                   _box_iou_numpy(boxes, gt), rtol=0,
                                   atol=1e-12)
