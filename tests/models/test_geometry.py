"""box_to_cell_coverage against a brute-force pixel count."""
import numpy as np
import pytest
import torch

from mmsaol.models.batch_augments import box_to_cell_coverage, paste_maps


def brute_force(box, image_size, grid_size, upsample=4):
    """Count covered sub-pixels of every cell on a grid fine enough to be
    exact for integer boxes and cells whose edges fall on 1/upsample px."""
    img_h, img_w = image_size
    grid_h, grid_w = grid_size
    scale_h, scale_w = grid_h * upsample, grid_w * upsample
    fine_h, fine_w = img_h * scale_h, img_w * scale_w
    mask = np.zeros((fine_h, fine_w), np.float64)
    x1, y1, x2, y2 = box
    mask[int(y1 * scale_h):int(y2 * scale_h),
         int(x1 * scale_w):int(x2 * scale_w)] = 1
    cells = mask.reshape(grid_h, fine_h // grid_h, grid_w, fine_w // grid_w)
    return cells.mean(axis=(1, 3))


@pytest.mark.parametrize('image_size, grid_size', [
    ((224, 224), (7, 7)), ((32, 32), (4, 4)), ((40, 40), (5, 5)),
    ((33, 47), (5, 3)), ((17, 23), (4, 6)), ((96, 64), (3, 2)),
    ((10, 10), (1, 1)), ((9, 9), (9, 9)),
])
def test_matches_brute_force_on_random_boxes(image_size, grid_size):
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(20):
        y1, y2 = np.sort(rng.integers(0, image_size[0] + 1, size=2))
        x1, x2 = np.sort(rng.integers(0, image_size[1] + 1, size=2))
        boxes.append((x1, y1, x2, y2))
    got = box_to_cell_coverage(torch.tensor(boxes, dtype=torch.float32),
                               image_size, grid_size)
    for box, cov in zip(boxes, got):
        expected = brute_force(box, image_size, grid_size)
        np.testing.assert_allclose(cov.numpy(), expected, atol=1e-6)


def test_full_empty_and_area_preserving():
    full = box_to_cell_coverage(torch.tensor([[0., 0., 40., 40.]]), (40, 40),
                                (5, 5))
    assert torch.all(full == 1)
    empty = box_to_cell_coverage(torch.tensor([[10., 10., 10., 30.]]),
                                 (40, 40), (5, 5))
    assert torch.all(empty == 0)
    box = torch.tensor([[3., 5., 29., 22.]])
    cov = box_to_cell_coverage(box, (37, 41), (6, 7))
    cell_area = (37 / 6) * (41 / 7)
    assert cov.sum() * cell_area == pytest.approx(26 * 17, rel=1e-5)


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
