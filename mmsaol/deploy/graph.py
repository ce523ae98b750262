"""The inference graph of a SAOL (or GAP-FC) classifier, for export.

A thin ``nn.Module`` around a built mmpretrain classifier: the classifier's
own data preprocessor (optional), backbone and head, returning plain tensors
with fixed names instead of ``DataSample`` lists. Every number comes from the
head's own functions (:meth:`SAOLHead.saol_outputs`, :func:`class_maps`,
:meth:`SAOLHead.gapfc_logits`, :func:`class_activation_maps`), so the
exported graph computes exactly what ``predict`` attaches.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_positive_int
from ..models.heads.cam_head import CAMHead, class_activation_maps
from ..models.heads.functional import class_maps
from ..models.heads.saol_head import SAOLHead

#: What a graph returns, per output kind (the ONNX output names, in order).
#: ``'saol'``: SAOL's probabilities, attention map and the class maps
#: ``A * Y_c`` of the top-k classes; ``'gapfc'``: the probabilities of a
#: SAOL head's self-distilled GAP-FC branch, or of a GAP-FC model, alone;
#: ``'cam'``: a GAP-FC model's probabilities and class activation maps.
OUTPUT_NAMES: Dict[str, Tuple[str, ...]] = {
    'saol': ('probs', 'attention', 'class_maps', 'class_map_labels'),
    'gapfc': ('probs', ),
    'cam': ('probs', 'class_maps', 'class_map_labels'),
}
INPUT_NAME = 'inputs'


def output_kind(model: nn.Module, head: str | None = None) -> str:
    """The outputs a classifier can export, from its head type and the
    ``--head`` choice (``None``: the head's own maps).

    Args:
        model (nn.Module): A built classifier; its head is a
            :class:`SAOLHead`, or a :class:`CAMHead` (a GAP-FC model built
            with maps, see :func:`mmsaol.model_configs.maps_config`).
        head (str, optional): ``'saol'``, ``'gapfc'`` or None.

    Returns:
        str: a key of :data:`OUTPUT_NAMES`.
    """
    if head not in (None, 'saol', 'gapfc'):
        raise ValueError(f"head must be 'saol', 'gapfc' or None, got "
                         f'{head!r}.')
    if isinstance(model.head, SAOLHead):
        if head == 'gapfc' and model.head.gapfc is None:
            raise ValueError(
                "--head gapfc needs the self-distilled GAP-FC branch, but "
                'model.head.distillation is None: export --head saol, or a '
                'checkpoint trained with model.head.distillation=dict().')
        return head or 'saol'
    if isinstance(model.head, CAMHead):
        if head == 'saol':
            raise ValueError(
                'The model has a GAP-FC head, not SAOLHead: leave --head out '
                '(probabilities and class activation maps) or use --head '
                'gapfc (probabilities only).')
        return head or 'cam'
    raise ValueError(
        f'model.head.type is {type(model.head).__name__}; export needs '
        'SAOLHead or a GAP-FC LinearClsHead.')


class InferenceGraph(nn.Module):
    """Preprocessing, backbone and head of a classifier as one tensor graph.

    ``forward(inputs)`` takes the batch the classifier's data preprocessor
    takes (``(N, C, H, W)`` float pixels, as the test pipeline gives them)
    and returns the tensors of :data:`OUTPUT_NAMES` ``[kind]``:

    - ``probs`` ``(N, K)``: the prediction (``softmax`` of the head output,
      as ``predict`` reports it);
    - ``attention`` ``(N, h, w)``: SAOL's attention map ``A`` (sums to 1);
    - ``class_maps`` ``(N, k, h, w)``: the maps of the ``k`` most probable
      classes, ``A * Y_c`` (SAOL; each sums to that class's probability) or
      the class activation maps (GAP-FC);
    - ``class_map_labels`` ``(N, k)`` int64: those classes, most probable
      first.

    Args:
        model (nn.Module): A built classifier in eval mode (see
            :func:`output_kind` for the heads it takes).
        head (str, optional): ``'saol'``, ``'gapfc'`` (probabilities
            alone: a SAOL head's distilled GAP-FC branch, or a GAP-FC
            model's head) or None (the head's maps). Defaults to None.
        topk (int): Class maps per image, at most the number of classes.
            Defaults to 2.
        normalize (bool): Run the data preprocessor (channel order and
            mean/std) in the graph; False takes already normalised inputs.
            Defaults to True.
    """

    def __init__(self, model: nn.Module, head: str | None = None,
                 topk: int = 2, normalize: bool = True) -> None:
        super().__init__()
        self.kind = output_kind(model, head)
        check_positive_int(topk, 'topk')
        self.model = model
        self.topk = min(topk, self._num_classes())
        self.normalize = normalize

    @property
    def output_names(self) -> Tuple[str, ...]:
        return OUTPUT_NAMES[self.kind]

    def _num_classes(self) -> int:
        head = self.model.head
        return head.num_classes if isinstance(head, SAOLHead) \
            else head.fc.out_features

    def preprocess(self, inputs: Tensor) -> Tensor:
        """The classifier's data preprocessor on a stacked batch (channel
        flip, float, mean/std), or only the cast to float."""
        if not self.normalize:
            return inputs.float()
        return self.model.data_preprocessor(dict(inputs=inputs),
                                            False)['inputs']

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        feats = self.model.extract_feat(self.preprocess(inputs))
        head = self.model.head
        if isinstance(head, SAOLHead):
            if self.kind == 'gapfc':
                last = head._check_feats(feats)[-1]
                return (F.softmax(head.gapfc_logits(last), dim=1), )
            out = head.saol_outputs(feats)
            probs = F.softmax(out.log_probs, dim=1)
            top = probs.topk(self.topk, dim=1).indices
            maps = class_maps(out.log_attention, out.log_spatial, top)
            return probs, out.log_attention.exp(), maps, top
        logits = head.fc(head.pre_logits(feats))
        probs = F.softmax(logits, dim=1)
        if self.kind == 'gapfc':
            return (probs, )
        top = probs.topk(self.topk, dim=1).indices
        maps = class_activation_maps(feats[-1].float(),
                                     head.fc.weight.float(),
                                     head.fc.bias.float(), top)
        return probs, maps, top
