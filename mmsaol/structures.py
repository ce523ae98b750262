"""What SAOL's components hand each other, in one place.

A training step passes data along mmpretrain's usual path, and SAOL adds
to it only what is defined here::

    GeometryCutMix --MixGeometry--> SAOLDataPreprocessor
        --forward(..., mix=MixGeometry)--> SAOLClassifier
        --MixContext--> SAOLHead.loss

- :class:`MixGeometry`: what one CutMix call did to a batch (boxes,
  partners, the batch before pasting), one object for the whole batch. The
  preprocessor returns it as the extra key ``'mix'`` of its output, which
  mmengine's ``train_step`` hands to ``forward`` as a keyword argument.
- :class:`SAOLOutputs`: the maps SAOL computes for a batch.
- :class:`MixContext`: the one argument :class:`SAOLClassifier` adds to
  ``SAOLHead.loss``: the geometry and SAOL's maps of the un-mixed batch.

Prediction adds three data fields to every sample (:func:`attach_maps`,
used by ``SAOLHead`` and ``CAMHead``; read by the WSOL metric, the map
pictures and the ONNX runtime): ``ATTENTION_MAP`` ``(h, w)`` (SAOL only),
``CLASS_MAPS`` ``(k, h, w)`` and ``CLASS_MAP_LABELS`` ``(k,)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

from mmpretrain.structures import DataSample
from torch import Tensor

#: Prediction fields (see :func:`attach_maps`).
ATTENTION_MAP = 'attention_map'
CLASS_MAPS = 'class_maps'
CLASS_MAP_LABELS = 'class_map_labels'


@dataclass(frozen=True)
class MixGeometry:
    """What one CutMix call did to a batch.

    Attributes:
        boxes (Tensor): ``(N, 4)`` pasted box of every image, ``(x1, y1, x2,
            y2)`` in input pixels, half-open. With one box per batch all rows
            are equal.
        partner (Tensor): ``(N,)`` index of the image pasted into image i.
        image_size (Tuple[int, int]): ``(H, W)`` of the mixed batch.
        unmixed (Tensor): ``(N, C, H, W)`` the batch before pasting (one
            copy of the input batch; SAOL's self-annotated targets are the
            network's maps of it).
    """

    boxes: Tensor
    partner: Tensor
    image_size: Tuple[int, int]
    unmixed: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.partner.numel())


class SAOLOutputs(NamedTuple):
    """Everything SAOL computes for a batch.

    Attributes:
        log_attention (Tensor): ``(N, h, w)`` log attention map ``log A``.
        log_spatial (Tensor): ``(N, K, h, w)`` log spatial posteriors
            ``log Y``.
        log_probs (Tensor): ``(N, K)`` output ``log y``.
        last_feat (Tensor, optional): ``(N, C_L, h, w)`` last backbone map
            ``X^L`` (None in the un-mixed maps, which need not keep it).
    """

    log_attention: Tensor
    log_spatial: Tensor
    log_probs: Tensor
    last_feat: Optional[Tensor]


@dataclass(frozen=True)
class MixContext:
    """How a training batch was mixed, as :class:`SAOLClassifier` hands it
    to ``SAOLHead.loss`` (a stock ``ImageClassifier`` hands nothing).

    Attributes:
        geometry (MixGeometry, optional): the CutMix geometry; None for a
            batch that ``GeometryCutMix`` did not mix (Mixup or identity
            chosen by ``RandomBatchAugment``).
        unmixed (SAOLOutputs, optional): SAOL's maps of the un-mixed batch,
            computed without gradient and without touching BN statistics,
            when the head's self-supervision is self-annotated.
    """

    geometry: Optional[MixGeometry] = None
    unmixed: Optional[SAOLOutputs] = None


def attach_maps(samples: List[DataSample], class_maps: Tensor,
                labels: Tensor, attention: Optional[Tensor] = None) -> None:
    """Attach per-image maps to predicted samples.

    Args:
        samples (List[DataSample]): one per image, filled in place.
        class_maps (Tensor): ``(N, k, h, w)`` maps of ``k`` classes.
        labels (Tensor): ``(N, k)`` the classes of ``class_maps``.
        attention (Tensor, optional): ``(N, h, w)`` SAOL's attention map.
    """
    for i, sample in enumerate(samples):
        if attention is not None:
            sample.set_field(attention[i], ATTENTION_MAP)
        sample.set_field(class_maps[i], CLASS_MAPS)
        sample.set_field(labels[i], CLASS_MAP_LABELS)
