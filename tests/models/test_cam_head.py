"""CAMHead: LinearClsHead's predictions plus class activation maps."""
import pytest
import torch
from mmpretrain.registry import MODELS

from mmsaol.models.heads.cam_head import CAMHead, class_activation_maps


def heads(**kw):
    torch.manual_seed(0)
    linear = MODELS.build(dict(type='LinearClsHead', num_classes=6,
                               in_channels=8))
    linear.init_weights()
    cam = MODELS.build(dict(type='CAMHead', num_classes=6, in_channels=8,
                            **kw))
    cam.load_state_dict(linear.state_dict())   # same parameters
    return linear, cam


def test_same_parameters_and_predictions_as_linear_head():
    linear, cam = heads()
    assert isinstance(cam, CAMHead)
    feat = torch.randn(3, 8, 4, 5)
    pooled = (feat.mean(dim=(2, 3)), )
    torch.testing.assert_close(cam((feat, )), linear(pooled))
    torch.testing.assert_close(cam(pooled), linear(pooled))
    for a, b in zip(cam.predict((feat, )), linear.predict(pooled)):
        torch.testing.assert_close(a.pred_score, b.pred_score)
        assert 'class_maps' not in a


def test_cam_mean_is_the_logit():
    _, cam = heads(with_maps=True, maps_topk=6)
    feat = torch.randn(2, 8, 4, 5)
    samples = cam.predict((feat, ))
    logits = cam((feat, ))
    for i, sample in enumerate(samples):
        assert sample.class_maps.shape == (6, 4, 5)
        labels = sample.class_map_labels
        assert labels.tolist() == logits[i].argsort(descending=True).tolist()
        torch.testing.assert_close(sample.class_maps.mean(dim=(1, 2)),
                                   logits[i, labels])


def test_cam_formula():
    feat = torch.randn(2, 3, 2, 2)
    weight, bias = torch.randn(4, 3), torch.randn(4)
    classes = torch.tensor([[2, 0], [1, 1]])
    maps = class_activation_maps(feat, weight, bias, classes)
    for n in range(2):
        for j, c in enumerate(classes[n]):
            expected = (weight[c, :, None, None] * feat[n]).sum(0) + bias[c]
            torch.testing.assert_close(maps[n, j], expected)


def test_maps_need_the_spatial_map():
    _, cam = heads(maps_topk=2)
    with pytest.raises(ValueError, match='model.neck=None'):
        cam.predict((torch.randn(2, 8), ), with_maps=True)
    with pytest.raises(ValueError, match='maps_topk'):
        MODELS.build(dict(type='CAMHead', num_classes=6, in_channels=8,
                          maps_topk=0))
