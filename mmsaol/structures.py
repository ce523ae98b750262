"""What SAOL's components hand each other, in one place.

A training step passes data along mmpretrain's usual path, and SAOL adds
to it only what is defined here::

    GeometryCutMix --MixGeometry--> SAOLDataPreprocessor
        --DataSample metainfo MIX_GEOMETRY--> SAOLClassifier
        --MixContext--> SAOLHead.loss

- :class:`MixGeometry`: what one CutMix call did to a batch (boxes,
  partners, the batch before pasting), one object for the whole batch.
- ``MIX_GEOMETRY``: the metainfo key under which every
  :class:`DataSample` of a batch mixed by ``GeometryCutMix`` refers to that
  one object (read it with :func:`mix_geometry`; a batch that was not mixed
  by it has none).
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
from typing import List, NamedTuple, Optional, Sequence, Tuple

from mmpretrain.structures import DataSample
from torch import Tensor

#: Metainfo key of every DataSample of a batch mixed by GeometryCutMix: the
#: batch's :class:`MixGeometry` (the same object in every sample).
MIX_GEOMETRY = 'saol_mix_geometry'
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


def attach_mix_geometry(samples: Sequence[DataSample],
                        geometry: MixGeometry) -> None:
    """Record a batch's geometry in every sample: one shared object (not
    ``set_metainfo``, which would deep-copy the batch into every sample).

    Args:
        samples (Sequence[DataSample]): the batch's samples, changed in
            place.
        geometry (MixGeometry): what CutMix did to the batch.
    """
    for sample in samples:
        sample.set_field(geometry, MIX_GEOMETRY, field_type='metainfo')


def mix_geometry(samples: Sequence[DataSample]) -> Optional[MixGeometry]:
    """The :class:`MixGeometry` of a batch, or None when it was not mixed by
    ``GeometryCutMix``.

    Args:
        samples (Sequence[DataSample]): the batch's samples, as the data
            preprocessor returned them.

    Returns:
        MixGeometry, optional: the one geometry every sample refers to.

    Raises:
        ValueError: when the samples do not all refer to the same geometry
            of a batch of their size (samples regrouped after mixing).
    """
    if not samples:
        return None
    geometry = samples[0].metainfo.get(MIX_GEOMETRY)
    if geometry is None:
        return None
    if geometry.batch_size != len(samples) or any(
            s.metainfo.get(MIX_GEOMETRY) is not geometry for s in samples):
        raise ValueError(
            'The data samples of this batch do not share the CutMix geometry '
            'of one batch of their size: a step between the data '
            'preprocessor and the model regrouped or copied them (a '
            'DataSample .to(), .clone() or .new() copies its metainfo). '
            'Pass the batch from SAOLDataPreprocessor to the model '
            'unchanged.')
    return geometry


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
