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



def components_oracle(mask):
    """8-connected components by breadth-first search, in raster order of
    their first pixel: a list of pixel lists."""
    height, width = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    components = []
    for y in range(height):
        for x in range(width):
            if not mask[y, x] or seen[y, x]:
                continue
            seen[y, x] = True
            queue, pixels = [(y, x)], []
            while queue:
                cy, cx = queue.pop()
                pixels.append((cy, cx))
                for ny in range(max(cy - 1, 0), min(cy + 2, height)):
                    for nx in range(max(cx - 1, 0), min(cx + 2, width)):
                        if mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            components.append(pixels)
    return components


def test_largest_component_box_properties_on_random_masks():
    """The box is the bounding box of a largest 8-connected component, the
    first in raster order among equally large ones (an independent
    breadth-first search as the reference), on noisy masks with many
    equally large components and on thresholded smooth maps."""
    rng = np.random.default_rng(0)
    ties = 0
    for trial in range(200):
        height, width = (int(v) for v in rng.integers(1, 25, size=2))
        if trial % 2:
            mask = rng.random((height, width)) < rng.random()
        else:
            grid = torch.as_tensor(rng.random(rng.integers(1, 6, size=2)))
            mask = normalize_map(image_map(grid, (height, width))) >= \
                rng.random()
        components = components_oracle(mask)
        box = largest_component_box(mask)
        if not components:
            np.testing.assert_array_equal(box, [0, 0, 0, 0])
            continue
        sizes = [len(c) for c in components]
        ties += sizes.count(max(sizes)) > 1
        pixels = np.array(components[int(np.argmax(sizes))])
        np.testing.assert_array_equal(
            box, [pixels[:, 1].min(), pixels[:, 0].min(),
                  pixels[:, 1].max() + 1, pixels[:, 0].max() + 1])
    assert ties > 10   # the tie rule was exercised


def test_box_iou_properties_on_random_boxes():
    """Symmetric, 1 on the diagonal for non-empty boxes, in [0, 1], and the
    area formula on integer boxes (exact in float64)."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.integers(0, 30, size=(40, 2, 2)), axis=1)
    boxes = corners.transpose(0, 2, 1).reshape(40, 4)[:, [0, 2, 1, 3]]
    ious = box_iou(boxes, boxes)
    np.testing.assert_array_equal(ious, ious.T)
    assert ((0 <= ious) & (ious <= 1)).all()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(np.diag(ious), np.where(area > 0, 1, 0))
    width = (np.minimum(boxes[:, None, 2], boxes[None, :, 2]) -
             np.maximum(boxes[:, None, 0], boxes[None, :, 0])).clip(min=0)
    height = (np.minimum(boxes[:, None, 3], boxes[None, :, 3]) -
              np.maximum(boxes[:, None, 1], boxes[None, :, 1])).clip(min=0)
    inter = width * height
    union = area[:, None] + area[None, :] - inter
    np.testing.assert_allclose(
        ious, np.where(union > 0, inter / np.maximum(union, 1), 0),
        rtol=1e-15, atol=0)
    with pytest.raises(ValueError, match='x1 <= x2'):
        box_iou([5, 0, 1, 4], boxes)
