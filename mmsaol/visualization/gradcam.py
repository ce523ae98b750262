"""Gradient-based class maps of any mmpretrain classifier, through the
``grad-cam`` package (pytorch-grad-cam, the library behind mmpretrain's
``tools/visualization/vis_cam.py``): the baselines users run.

- Grad-CAM (Selvaraju et al., ICCV 2017, `arXiv:1610.02391
  <https://arxiv.org/abs/1610.02391>`_): channel weights = spatial mean of
  the class score's gradient.
- Grad-CAM++ (Chattopadhay et al., WACV 2018, `arXiv:1710.11063
  <https://arxiv.org/abs/1710.11063>`_): higher-order weighting of positive
  gradients.
- Layer-CAM (Jiang et al., TIP 2021): element-wise positive gradients times
  activations.

Maps are the library's own output: ReLU, min-max per image, bilinear at
the network input size (the WSOL protocol then resizes them to its frame).

**Target layer, chosen automatically** (:func:`auto_target_layer`): the
outermost backbone module whose output *is* the feature map the neck or
head receives (e.g. ``backbone.layer4`` of a ResNet, the layer
pytorch-grad-cam's documentation uses). A token backbone whose map is its
tokens reshaped (Swin) gets the module producing those tokens, with a
token-to-map reshape. A backbone that hands the head a vector (ViT's class
token) gets mmpretrain's ``vis_cam.py`` choice: the first norm layer of the
last transformer block (after the last attention the patch tokens no longer
reach the class token), with the extra tokens dropped and the patch grid
restored. ``target_layer`` (a module name) overrides the choice.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.utils.dl_utils import is_norm
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from ..checks import check_choice, check_positive_int
from ..structures import attach_maps

#: Map sources of the grad-cam package, by their command-line names.
GRADCAM_METHODS: Dict[str, type] = {
    'gradcam': GradCAM,
    'gradcam++': GradCAMPlusPlus,
    'layercam': LayerCAM,
}

Reshape = Optional[Callable[[Tensor], Tensor]]
#: Metainfo key naming the method of Grad-CAM-style class maps.
MAP_METHOD = 'class_map_method'
#: Model types :func:`gradcam_config` turns into ``GradCAMClassifier``.
STOCK_CLASSIFIERS = ('ImageClassifier', 'GradCAMClassifier')


class _Logits(nn.Module):
    """A classifier as ``inputs -> logits`` (what pytorch-grad-cam calls)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, inputs: Tensor) -> Tensor:
        return self.classifier(inputs, mode='tensor')


def tokens_to_map(tokens: Tensor, grid: Tuple[int, int],
                  extra_tokens: int = 0) -> Tensor:
    """``(N, extra + h * w, C)`` tokens as an ``(N, C, h, w)`` map.

    Args:
        tokens (Tensor): Token sequence of a transformer layer.
        grid (Tuple[int, int]): ``(h, w)`` of the patch grid.
        extra_tokens (int): Leading tokens to drop (class token...).

    Returns:
        Tensor: the patch tokens on their grid.
    """
    patches = tokens[:, extra_tokens:, :]
    height, width = grid
    if patches.shape[1] != height * width:
        raise ValueError(f'{patches.shape[1]} patch tokens do not fill a '
                         f'{height}x{width} grid.')
    return patches.reshape(patches.shape[0], height, width,
                           patches.shape[2]).permute(0, 3, 1, 2)


def _module_outputs(backbone: nn.Module, inputs: Tensor
                    ) -> Tuple[List[Tuple[str, Tensor]], Tensor]:
    """Every backbone module's (last) tensor output for ``inputs``, in the
    order the modules finished, and the backbone's last output."""
    outputs: Dict[str, Tensor] = {}
    handles = []
    for name, module in backbone.named_modules():
        if name:
            def hook(_module, _args, output, name=name):
                if isinstance(output, Tensor):
                    outputs.pop(name, None)
                    outputs[name] = output.detach().clone()
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            final = backbone(inputs)
    finally:
        for handle in handles:
            handle.remove()
    final = final[-1] if isinstance(final, (tuple, list)) else final
    if isinstance(final, (tuple, list)):  # ViT 'cls_token' + patch tokens
        final = final[-1]
    return list(outputs.items()), final


def auto_target_layer(classifier: nn.Module, inputs: Tensor
                      ) -> Tuple[str, Reshape]:
    """The Grad-CAM target layer of an mmpretrain classifier (see the
    module's docstring for the rule).

    Args:
        classifier (nn.Module): An ``ImageClassifier`` (``backbone``).
        inputs (Tensor): One preprocessed batch (only shapes matter; one
            image is enough).

    Returns:
        tuple[str, Callable | None]: the module's name (as in
        ``classifier.named_modules()``) and the reshape of its output into
        an ``(N, C, h, w)`` map (None when it is one already).
    """
    backbone = classifier.backbone
    outputs, final = _module_outputs(backbone, inputs[:1])
    depth = {name: name.count('.') for name, _ in outputs}
    if final.ndim == 4:
        batch, channels, height, width = final.shape
        same = [name for name, out in outputs
                if out.shape == final.shape and torch.equal(out, final)]
        if same:
            return 'backbone.' + min(same, key=lambda n: depth[n]), None
        tokens = [name for name, out in outputs
                  if out.shape == (batch, height * width, channels)
                  and torch.equal(tokens_to_map(out, (height, width)),
                                  final)]
        if tokens:
            grid = (height, width)
            return ('backbone.' + min(tokens, key=lambda n: depth[n]),
                    lambda t: tokens_to_map(t, grid))
    norms = [name for name, module in backbone.named_modules()
             if name and is_norm(module)]
    extra = int(getattr(backbone, 'num_extra_tokens', 0))
    named = dict(outputs)
    if len(norms) >= 3 and named.get(norms[-3]) is not None \
            and named[norms[-3]].ndim == 3:
        count = named[norms[-3]].shape[1] - extra
        side = math.isqrt(count)
        grid = tuple(getattr(backbone, 'patch_resolution', (side, side)))
        return ('backbone.' + norms[-3],
                lambda t: tokens_to_map(t, grid, extra))
    raise ValueError(
        'No Grad-CAM target layer found automatically: the backbone hands '
        f'the head a {tuple(final.shape)} output that no module produces as '
        'a map; name one with target_layer (a module name of the model).')


def _named_module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f'target_layer {name!r} is not a module of the '
                         "model; use a name from model.named_modules(), "
                         "e.g. 'backbone.layer4'.")
    return modules[name]


def gradcam_maps(classifier: nn.Module, inputs: Tensor,
                 labels: Sequence[int], method: str = 'gradcam',
                 target: Optional[Tuple[str, Reshape]] = None) -> Tensor:
    """Grad-CAM-style maps of one class per image.

    Args:
        classifier (nn.Module): An mmpretrain ``ImageClassifier`` whose
            ``forward(inputs, mode='tensor')`` gives logits.
        inputs (Tensor): ``(N, C, H, W)`` preprocessed batch.
        labels (Sequence[int]): The class of each image's map.
        method (str): ``'gradcam'``, ``'gradcam++'`` or ``'layercam'``.
        target (tuple, optional): ``(layer name, reshape)``; defaults to
            :func:`auto_target_layer`.

    Returns:
        Tensor: ``(N, H, W)`` float32 maps in ``[0, 1]`` (the package's
        output, at the input size).
    """
    check_choice(method, tuple(GRADCAM_METHODS), 'map method')
    if target is None:
        target = auto_target_layer(classifier, inputs)
    layer = _named_module(classifier, target[0])
    targets = [ClassifierOutputTarget(int(c)) for c in labels]
    with torch.enable_grad(), GRADCAM_METHODS[method](
            model=_Logits(classifier), target_layers=[layer],
            reshape_transform=target[1]) as cam:
        maps = cam(input_tensor=inputs, targets=targets)
    classifier.zero_grad(set_to_none=True)
    return torch.from_numpy(maps).float()


def gradcam_config(cfg: Config, method: str = 'gradcam',
                   topk: Optional[int] = None) -> Config:
    """A copy of ``cfg`` whose model attaches Grad-CAM-style maps
    (:class:`GradCAMClassifier`; same parameters, so the same checkpoint
    loads).

    Args:
        cfg (Config): A full config of a stock ``ImageClassifier``.
        method (str): ``'gradcam'``, ``'gradcam++'`` or ``'layercam'``.
        topk (int, optional): Predicted classes with a map (besides the
            true class). Defaults to 1.

    Returns:
        Config: the modified copy.
    """
    check_choice(method, tuple(GRADCAM_METHODS), 'map')
    model_type = cfg.model.get('type')
    model_type = getattr(model_type, '__name__', model_type)
    if model_type not in STOCK_CLASSIFIERS:
        raise ValueError(
            f'{method} maps are drawn for a stock ImageClassifier, but '
            f'model.type is {model_type!r}: for a SAOL model score its own '
            "maps (map 'class' or 'attention'), or its GAP-FC twin "
            '(mmsaol export-gapfc) with Grad-CAM.')
    cfg = copy.deepcopy(cfg)
    cfg.model.type = GradCAMClassifier.__name__
    cfg.model.cam_method = method
    if topk is not None:
        cfg.model.maps_topk = int(topk)
    return cfg


@MODELS.register_module()
class GradCAMClassifier(ImageClassifier):
    """mmpretrain's ``ImageClassifier`` whose predictions carry Grad-CAM
    (or Grad-CAM++, Layer-CAM) class maps, for the WSOL metric and the map
    pictures: the baselines users run (see
    :mod:`mmsaol.visualization.gradcam`).

    Same parameters and predictions as ``ImageClassifier`` (a stock
    checkpoint loads unchanged). Every predicted sample gets
    ``class_maps`` ``(k, H, W)`` and ``class_map_labels`` ``(k,)``: the map
    of the true class when the sample has a ``gt_label`` (GT-known
    localisation), then of the top ``maps_topk`` predicted classes,
    without repeats. Each distinct class position costs one backward pass
    of the batch, so prediction runs with gradients even inside
    ``torch.no_grad()``.

    Args:
        cam_method (str): ``'gradcam'`` (default), ``'gradcam++'`` or
            ``'layercam'``.
        target_layer (str, optional): Module name of the target layer
            (e.g. ``'backbone.layer4'``). Defaults to the automatic choice.
        maps_topk (int): Predicted classes with a map. Defaults to 1.
        **kwargs: Arguments of ``ImageClassifier``.
    """

    def __init__(self,
                 cam_method: str = 'gradcam',
                 target_layer: Optional[str] = None,
                 maps_topk: int = 1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice(cam_method, tuple(GRADCAM_METHODS),
                     'model.cam_method')
        check_positive_int(maps_topk, 'model.maps_topk')
        self.cam_method = cam_method
        self.target_layer = target_layer
        self.maps_topk = maps_topk
        self._target: Optional[Tuple[str, Reshape]] = None

    def _cam_target(self, inputs: Tensor) -> Tuple[str, Reshape]:
        if self._target is None:
            if self.target_layer is None:
                self._target = auto_target_layer(self, inputs)
            else:
                _named_module(self, self.target_layer)
                self._target = (self.target_layer, None)
        return self._target

    def predict(self, inputs: Tensor,
                data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """Predict as ``ImageClassifier``; attach the maps."""
        samples = super().predict(inputs, data_samples, **kwargs)
        count = min(self.maps_topk, samples[0].pred_score.numel())
        wanted = []
        for sample in samples:
            top = sample.pred_score.topk(count).indices.tolist()
            gt = [int(sample.gt_label[0])] if 'gt_label' in sample else []
            wanted.append(gt + top)
        columns = max(len(w) for w in wanted)
        maps: List[Dict[int, Tensor]] = [{} for _ in samples]
        target = self._cam_target(inputs)
        for j in range(columns):
            labels = [w[min(j, len(w) - 1)] for w in wanted]
            if all(label in done for label, done in zip(labels, maps)):
                continue
            batch = gradcam_maps(self, inputs, labels, self.cam_method,
                                 target)
            for i, label in enumerate(labels):
                maps[i].setdefault(label, batch[i])
        for sample, done in zip(samples, maps):
            labels = list(done)
            attach_maps([sample], torch.stack([done[c] for c in labels])[None],
                        torch.tensor(labels)[None])
            sample.set_metainfo({MAP_METHOD: self.cam_method})
        return samples
