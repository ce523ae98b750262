"""The fast CPU pooling of the head equals adaptive average pooling."""
import pytest
import torch
import torch.nn.functional as F

from mmsaol.models.heads import resize_to_grid
from mmsaol.models.heads.functional import block_average


@pytest.mark.parametrize('shape,grid', [
    ((2, 3, 28, 28), (7, 7)),    # factor 4: two halvings
    ((2, 3, 14, 28), (7, 7)),    # different factors per axis
    ((2, 3, 42, 21), (7, 7)),    # factors 6 and 3: halving + odd rest
    ((2, 3, 24, 36), (4, 6)),    # non-square grid
    ((1, 2, 13, 26), (13, 13)),  # only one axis pooled
    ((2, 3, 30, 30), (7, 7)),    # grid does not divide: adaptive path
    ((2, 3, 4, 4), (7, 7)),      # upsampling: bilinear path
])
def test_resize_matches_adaptive_pooling_forward_and_backward(shape, grid):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out = resize_to_grid(x, grid)
    if shape[-1] < grid[-1]:
        ref = F.interpolate(x, size=grid, mode='bilinear',
                            align_corners=False)
    else:
        ref = F.adaptive_avg_pool2d(x, grid)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    grad, = torch.autograd.grad((out * weights).sum(), x)
    ref_grad, = torch.autograd.grad((ref * weights).sum(), x)
    torch.testing.assert_close(grad, ref_grad)


def test_block_average_rejects_a_grid_that_does_not_divide():
    with pytest.raises(ValueError, match='divides'):
        block_average(torch.zeros(1, 1, 10, 10), (3, 3))


def test_low_precision_maps_keep_pytorch_pooling():
    x = torch.randn(2, 4, 28, 28).bfloat16()
    assert torch.equal(resize_to_grid(x, (7, 7)),
                       F.adaptive_avg_pool2d(x, (7, 7)))
