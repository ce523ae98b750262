"""box_to_cell_coverage against a brute-force pixel count."""
import numpy as np
import pytest
import torch

from mmsaol.models.losses import box_to_cell_coverage, paste_maps
from mmsaol.models.losses.geometry import cell_stride


def brute_force(box, image_size, grid_size, strides):
    """Count covered sub-pixels of every cell, each cell being the pixels
    ``[i s, (i + 1) s)`` inside the image, on a grid fine enough to be exact
    for integer boxes and cell edges (integer strides: half pixels; else
    1/(2 cells) px)."""
    fine = [length * (1 if float(s).is_integer() else cells) * 2
            for length, cells, s in zip(image_size, grid_size, strides)]
    centres = [(np.arange(n) + 0.5) / (n / length)
               for n, length in zip(fine, image_size)]
    # One-hot cell membership of every sub-pixel, per axis.
    member = [np.eye(cells)[np.minimum((c / s).astype(int), cells - 1)].T
              for c, s, cells in zip(centres, strides, grid_size)]
    x1, y1, x2, y2 = box
    inside = (((centres[0] >= y1) & (centres[0] < y2))[:, None] &
              ((centres[1] >= x1) & (centres[1] < x2))[None, :])
    covered = member[0] @ inside.astype(float) @ member[1].T
    return covered / np.outer(member[0].sum(1), member[1].sum(1))


@pytest.mark.parametrize('image_size, grid_size, strides', [
    ((224, 224), (7, 7), (32, 32)), ((32, 32), (4, 4), (8, 8)),
    ((40, 40), (5, 5), (8, 8)), ((96, 64), (3, 2), (32, 32)),
    ((10, 10), (1, 1), (10, 10)), ((9, 9), (9, 9), (1, 1)),
    # Padded: ceil(33 / 8) = 5, ceil(47 / 16) = 3, ceil(23 / 4) = 6,
    # ceil(225 / 32) = 8; the last cells hold fewer image pixels.
    ((33, 47), (5, 3), (8, 16)), ((225, 23), (8, 6), (32, 4)),
    # No power-of-two stride gives 4 cells of 17 px: proportional cells.
    ((17, 24), (4, 6), (17 / 4, 4)),
])
def test_matches_brute_force_on_random_boxes(image_size, grid_size,
                                             strides):
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(20):
        y1, y2 = np.sort(rng.integers(0, image_size[0] + 1, size=2))
        x1, x2 = np.sort(rng.integers(0, image_size[1] + 1, size=2))
        boxes.append((x1, y1, x2, y2))
    got = box_to_cell_coverage(torch.tensor(boxes, dtype=torch.float32),
                               image_size, grid_size)
    for box, cov in zip(boxes, got):
        expected = brute_force(box, image_size, grid_size, strides)
        np.testing.assert_allclose(cov.numpy(), expected, atol=1e-6)


def test_full_empty_and_area_preserving():
    full = box_to_cell_coverage(torch.tensor([[0., 0., 40., 40.]]), (40, 40),
                                (5, 5))
    assert torch.all(full == 1)
    empty = box_to_cell_coverage(torch.tensor([[10., 10., 10., 30.]]),
                                 (40, 40), (5, 5))
    assert torch.all(empty == 0)
    box = torch.tensor([[3., 5., 29., 22.]])
    cov = box_to_cell_coverage(box, (36, 42), (6, 7))
    cell_area = (36 / 6) * (42 / 7)
    assert cov.sum() * cell_area == pytest.approx(26 * 17, rel=1e-5)


@pytest.mark.parametrize('length, cells, stride', [
    (224, 7, 32), (225, 8, 32), (40, 5, 8), (33, 5, 8), (17, 4, 17 / 4),
    (1, 1, 1), (7, 7, 1), (6, 4, 1.5),
])
def test_cell_stride(length, cells, stride):
    assert cell_stride(length, cells) == stride


def test_padded_last_cell_counts_only_image_pixels():
    # 225 px at stride 32: 8 cells, the last one holds the single pixel 224.
    cov = box_to_cell_coverage(torch.tensor([[224., 224., 225., 225.]]),
                               (225, 225), (8, 8))
    assert cov[0, 7, 7] == 1 and cov.sum() == 1


def test_rejects_malformed_boxes():
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        box_to_cell_coverage(torch.zeros(3), (8, 8), (2, 2))


def test_paste_maps_mixes_by_coverage():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    coverage = torch.tensor([[[1., 0.], [0.5, 0.]], [[0., 0.], [0., 0.]]])
    partner = torch.tensor([1, 0])
    out = paste_maps(maps, partner, coverage)
    torch.testing.assert_close(out[1], maps[1])
    torch.testing.assert_close(out[0, :, 0, 0], maps[1, :, 0, 0])
    torch.testing.assert_close(out[0, :, 1, 0],
                               0.5 * maps[0, :, 1, 0] + 0.5 * maps[1, :, 1, 0])
    torch.testing.assert_close(out[0, :, 0, 1], maps[0, :, 0, 1])
