"""GAP-FC head that also gives class activation maps (CAM)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ...checks import check_positive_int
from ...structures import attach_maps
from ..options import check_options


def class_activation_maps(feat: Tensor, weight: Tensor, bias: Optional[Tensor],
                          classes: Tensor) -> Tensor:
    r"""Class activation maps (Zhou et al., CVPR 2016) of chosen classes.

    .. math::
        M_c(i, j) = \sum_k W_{c,k} \, X_{k,ij} + b_c

    With the bias included, the mean of :math:`M_c` over the positions is
    the GAP-FC logit of class :math:`c`, exactly as SAOL's class maps sum to
    its output probability.

    Args:
        feat (Tensor): ``(N, C, h, w)`` last feature map.
        weight (Tensor): ``(K, C)`` FC weights.
        bias (Tensor, optional): ``(K,)`` FC bias.
        classes (Tensor): ``(N, k)`` class indices per image.

    Returns:
        Tensor: ``(N, k, h, w)`` maps.
    """
    maps = torch.einsum('nkc,nchw->nkhw', weight[classes], feat)
    if bias is not None:
        maps = maps + bias[classes][:, :, None, None]
    return maps


@MODELS.register_module()
class CAMHead(LinearClsHead):
    """:class:`LinearClsHead` that attaches class activation maps (CAM).

    `Learning Deep Features for Discriminative Localization
    <https://arxiv.org/abs/1512.04150>`_ (Zhou et al., CVPR 2016): the CAM of
    class ``c`` is the FC weights of ``c`` applied at every position of the
    last feature map. The baseline of SAOL's localisation results (Kim, Baek,
    Kim, CVPR 2020).

    Same parameters and predictions as ``LinearClsHead``, so a GAP-FC
    checkpoint loads unchanged. Maps need the spatial grid: build the model
    with ``model.neck=None`` (this head then pools the last map itself, the
    same global average pooling as the ``GlobalAveragePooling`` neck). Maps
    are attached in the format of :class:`SAOLHead`, so the same metric and
    drawing code read both.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last feature map.
        with_maps (bool): :meth:`predict` attaches ``class_maps``
            ``(maps_topk, h, w)`` (the CAMs of the top predicted classes) and
            ``class_map_labels`` ``(maps_topk,)`` to every sample. Defaults
            to False.
        maps_topk (int): How many class maps to attach. Defaults to 2.
        **kwargs: Other arguments of ``LinearClsHead`` (``loss``, ``topk``,
            ``cal_acc``, ``init_cfg``).
    """

    @check_options
    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 with_maps: bool = False,
                 maps_topk: int = 2,
                 **kwargs) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         **kwargs)
        check_positive_int(maps_topk, 'head.maps_topk')
        self.with_maps = with_maps
        self.maps_topk = maps_topk

    def pre_logits(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """The pooled last feature: ``(N, C)`` as given by a pooling neck, or
        the global average of an ``(N, C, h, w)`` map (``neck=None``)."""
        feat = feats[-1]
        return feat.mean(dim=(2, 3)) if feat.ndim == 4 else feat

    def predict(self,
                feats: Tuple[Tensor, ...],
                data_samples: Optional[List[Optional[DataSample]]] = None,
                with_maps: Optional[bool] = None) -> List[DataSample]:
        """Predict like ``LinearClsHead``; optionally attach CAMs.

        Args:
            feats (tuple[Tensor]): Backbone (or neck) outputs.
            data_samples (List[DataSample], optional): Samples to fill.
            with_maps (bool, optional): Attach ``class_maps`` and
                ``class_map_labels``. Defaults to ``self.with_maps``.

        Returns:
            List[DataSample]: samples with ``pred_score``/``pred_label``.
        """
        with_maps = self.with_maps if with_maps is None else with_maps
        if not with_maps:
            return super().predict(feats, data_samples)
        feat = feats[-1]
        if feat.ndim != 4:
            raise ValueError(
                'CAMHead needs the last feature map to draw class activation '
                f'maps, but received shape {tuple(feat.shape)}: set '
                'model.neck=None (the head pools the map itself; the weights '
                'stay the same).')
        scores = self.fc(self.pre_logits(feats))
        samples = self._get_predictions(scores, data_samples)
        top = scores.topk(min(self.maps_topk, self.num_classes), dim=1).indices
        maps = class_activation_maps(feat.float(), self.fc.weight.float(),
                                     self.fc.bias.float(), top)
        attach_maps(samples, maps, top)
        return samples
