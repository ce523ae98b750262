"""Grad-CAM-style maps of tiny mmpretrain classifiers (ResNet, ViT, Swin)
through the grad-cam package: the automatic target layer, the maps
against Grad-CAM's definition computed by hand, and GradCAMClassifier's
predictions (true class first, inside torch.no_grad)."""
import cv2
import numpy as np
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaol.visualization import (
    GRADCAM_METHODS,
    auto_target_layer,
    gradcam_maps,
)

MODELS_CFG = {
    'resnet': dict(
        backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                      base_channels=8, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=64)),
    'vit': dict(
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=8,
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64)),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=5,
                  in_channels=32)),
    'swin': dict(
        backbone=dict(type='SwinTransformer', img_size=32, window_size=2,
                      arch=dict(embed_dims=16, depths=[1, 1],
                                num_heads=[1, 2]), out_indices=(1, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=32)),
}
TARGETS = {'resnet': 'backbone.layer4', 'vit': 'backbone.layers.1.ln1',
           'swin': 'backbone.norm1'}


def build(name, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='GradCAMClassifier', **MODELS_CFG[name],
                             **kwargs)).eval()


@pytest.mark.parametrize('name', sorted(MODELS_CFG))
def test_automatic_target_layer(name):
    layer, reshape = auto_target_layer(build(name), torch.randn(1, 3, 32, 32))
    assert layer == TARGETS[name]
    assert (reshape is None) == (name == 'resnet')


def test_gradcam_is_the_definition_on_resnet():
    """Grad-CAM (Selvaraju et al.): ReLU(sum_k mean(dy_c/dA_k) A_k) at the
    target layer, then the package's min-max and bilinear resize."""
    model = build('resnet')
    inputs = torch.randn(2, 3, 32, 32)
    labels = [1, 3]
    maps = gradcam_maps(model, inputs, labels, 'gradcam')
    store = {}
    handle = model.backbone.layer4.register_forward_hook(
        lambda m, a, out: store.setdefault('act', out))
    logits = model(inputs, mode='tensor')
    handle.remove()
    act = store['act']
    grads = torch.autograd.grad(logits[[0, 1], labels].sum(), act)[0]
    cams = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * act).sum(1))
    for cam, got in zip(cams.detach().numpy(), maps.numpy()):
        cam = cam - cam.min()
        cam = cv2.resize(cam / (1e-7 + cam.max()), (32, 32))
        cam = cam - cam.min()
        np.testing.assert_allclose(got, cam / (1e-7 + cam.max()), atol=1e-4)


@pytest.mark.parametrize('name', sorted(MODELS_CFG))
@pytest.mark.parametrize('method', sorted(GRADCAM_METHODS))
def test_classifier_attaches_true_and_predicted_class_maps(name, method):
    model = build(name, cam_method=method)
    inputs = torch.randn(2, 3, 32, 32)
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
    with torch.no_grad():  # as in a test loop: the maps enable gradients
        out = model.predict(inputs, samples)
    for sample, gt in zip(out, (1, 3)):
        labels = sample.class_map_labels.tolist()
        pred = int(sample.pred_label)
        assert labels == ([gt] if pred == gt else [gt, pred])
        maps = sample.class_maps
        assert maps.shape == (len(labels), 32, 32)
        assert torch.isfinite(maps).all()
        assert 0 <= float(maps.min()) and float(maps.max()) <= 1
        assert sample.metainfo['class_map_method'] == method
    assert all(p.grad is None for p in model.parameters())


def test_bad_target_layer_and_method():
    with pytest.raises(ValueError, match="'backbone.nope' is not a module"):
        build('resnet', target_layer='backbone.nope').predict(
            torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='cam_method'):
        build('resnet', cam_method='cam')
