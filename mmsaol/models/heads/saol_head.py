"""Spatially Attentive Output Layer (SAOL) head."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ...structures import MixContext, SAOLOutputs, attach_maps
from ..losses.distill_loss import build_distillation_losses
from ..losses.geometry import box_to_cell_coverage
from ..losses.location_losses import (
    attention_mixed_labels,
    label_map_target,
    self_annotated_attention_target,
    self_annotated_spatial_target,
)
from ..options import (
    check_options,
    check_saol_head_options,
    check_stage_maps,
    positive_ints,
    self_supervision_parts,
)
from .functional import (
    class_maps,
    classification_target,
    log_class_softmax,
    log_spatial_softmax,
    resize_to_grid,
    saol_log_output,
)


class Pasting(NamedTuple):
    """Where a CutMix batch was pasted, as the loss terms read it.

    Attributes:
        coverage (Tensor): ``(N, h, w)`` pasted fraction ``M`` of every
            feature cell (:func:`box_to_cell_coverage`).
        partner (Tensor): ``(N,)`` index ``pi`` of the image pasted into
            image i.
        labels (Tensor): ``(N,)`` ground-truth classes of the un-mixed
            images.
    """

    coverage: Tensor
    partner: Tensor
    labels: Tensor


@MODELS.register_module()
class SAOLHead(ClsHead):
    """Spatially Attentive Output Layer (Kim, Baek, Kim, CVPR 2020).

    `Spatially Attentive Output Layer for Image Classification
    <https://arxiv.org/abs/2004.07570>`_. Replaces GAP-FC on top of the
    backbone's stage maps (set ``model.neck=None``):

    - **spatial attention map** ``A``: last map -> ``k x k`` conv + BN + ReLU
      -> 1x1 conv to one channel -> softmax over the ``h x w`` positions;
    - **multi-scale spatial logits** ``Y``: every received stage map -> 1x1
      conv + BN + ReLU to ``channels`` -> resized to the last map's grid ->
      concatenated -> 1x1 conv to ``num_classes`` -> softmax over classes;
    - **output** ``y_k = sum_ij A_ij Y_k,ij``; :meth:`forward` returns
      ``log y`` (see :func:`saol_log_output`), so mmpretrain's losses,
      metrics, TTA and FLOP counters work unchanged.

    Optional parts, each switched on by its config dict:

    - ``self_supervision``: CutMix location-specific losses on ``Y`` and
      ``A`` (needs :class:`SAOLClassifier` and :class:`GeometryCutMix`);
    - ``distillation``: a GAP-FC branch on the last map trained with the
      ground truth and distilled from SAOL's output; ``test_output='gapfc'``
      then predicts with it.

    Args:
        num_classes (int): Number of classes ``K``.
        in_channels (int | Sequence[int]): Channels of each stage map the
            backbone returns (``backbone.out_indices``), in order; the last
            one is ``X^L``. E.g. ``(512, 1024, 2048)`` for ResNet-50 stages
            2-4.
        channels (int): Width each stage map is reduced to before fusion.
            Defaults to 256 (keeps the ResNet-50 head within the cost
            budget: see docs/speed.md#cost).
        attention_channels (int, optional): Hidden width of the attention
            branch. Defaults to ``max(channels // 4, 1)``: the branch
            predicts a single channel, and a quarter of the width keeps its
            3x3 context at a sixteenth of the MACs (64 for ResNet-50; its
            speed and the demo's localisation with it: docs/speed.md#cost
            and docs/configs.md, "Options and why the defaults").
        attention_kernel_size (int): Kernel of the attention branch's first
            conv. Defaults to 3 (a 3x3 context, "two conv layers").
        attention_input (str): ``'reduced'`` (default) feeds the attention
            branch the last stage after its 1x1 reduction, which it shares
            with the logits branch (cheap); ``'last'`` feeds the raw last
            map ``X^L`` (the paper's wording, more parameters).
        zero_init_attention (bool): Zero-initialise the attention output conv
            so training starts from uniform attention (``y`` = mean of the
            spatial posteriors). Defaults to True.
        fusion_order (str): ``'resize_then_reduce'`` (default) pools a stage
            map that is larger than the last grid down to it before its 1x1
            reduction (the conv then runs on the small grid; a smaller map
            is reduced, then upsampled); ``'reduce_then_resize'`` reduces
            every map at its own resolution, then resizes (the segmentation
            decoders' order: BN + ReLU see every pixel, at more MACs).
        label_mix (str): How SAOL's classification target mixes the two
            labels of a CutMix image. ``'area'`` (default): by pasted area,
            as CutMix does (the data's ``gt_score``). ``'attention'``: by
            the attention mass inside the pasted box (cf. TransMix, CVPR
            2022): the partner's share is ``sum_ij A_ij M_ij`` with ``M``
            the cell coverage of the box and ``A`` the pasted self-annotated
            attention target (self-supervision ``'self'``) or else the
            mixed image's own attention (no gradient), so the target agrees
            with what ``y = sum A Y`` computes. Needs
            :class:`GeometryCutMix` and :class:`SAOLClassifier`; the GAP-FC
            branch keeps the area labels.
        dropout (float): Dropout on the fused map before the logits conv.
            Defaults to 0.
        norm_cfg (dict): Norm layer of the conv blocks; ``dict(type='SyncBN')``
            for synchronised BN. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation. Defaults to ``dict(type='ReLU')``.
        loss (dict): Classification loss on ``log y``. Use
            ``CrossEntropyLoss(use_soft=True)`` with batch augments.
        self_supervision (dict, optional): ``target`` is ``'self'``
            (self-annotated: the un-mixed batch's own ``Y``/``A``,
            cut-and-pasted) or ``'label'`` (cut-and-pasted one-hot label
            maps; no attention target). ``spatial_loss`` (default
            ``SpatialLogitsLoss``) and ``attention_loss`` (default
            ``AttentionLoss`` for ``'self'``; must be None for ``'label'``)
            are loss configs or None. Defaults to None (off).
        distillation (dict, optional): ``loss`` (default
            ``SelfDistillLoss``) and ``gt_loss`` (default: the ``loss``
            config) of the GAP-FC branch. Defaults to None (no branch).
        test_output (str): ``'saol'`` (default) or ``'gapfc'`` (needs
            ``distillation``): which branch :meth:`forward` and
            :meth:`predict` report.
        with_maps (bool): :meth:`predict` attaches ``attention_map``
            ``(h, w)`` and ``class_maps`` ``(maps_topk, h, w)`` of the top
            predicted classes (``class_map_labels``) to every sample.
            Defaults to False.
        maps_topk (int): How many class maps to attach. Defaults to 2.
        topk (int | Tuple[int]): Top-k accuracy for ``cal_acc``.
        cal_acc (bool): Compute training accuracy (hard labels only).
        init_cfg (dict, optional): Initialisation config.
    """

    @check_options
    def __init__(self,
                 num_classes: int,
                 in_channels: Union[int, Sequence[int]],
                 channels: int = 256,
                 attention_channels: Optional[int] = None,
                 attention_kernel_size: int = 3,
                 attention_input: str = 'reduced',
                 zero_init_attention: bool = True,
                 fusion_order: str = 'resize_then_reduce',
                 label_mix: str = 'area',
                 dropout: float = 0.0,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 self_supervision: Optional[dict] = None,
                 distillation: Optional[dict] = None,
                 test_output: str = 'saol',
                 with_maps: bool = False,
                 maps_topk: int = 2,
                 topk: Union[int, Tuple[int]] = (1, ),
                 cal_acc: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(loss=loss, topk=topk, cal_acc=cal_acc,
                         init_cfg=init_cfg)
        if attention_channels is None:
            attention_channels = max(
                positive_ints(channels, 'head.channels')[0] // 4, 1)
        check_saol_head_options(num_classes, attention_channels,
                                attention_input, fusion_order, label_mix,
                                dropout, test_output, distillation)
        self.num_classes = num_classes
        self.in_channels = positive_ints(in_channels, 'head.in_channels')
        self.channels = positive_ints(channels, 'head.channels')[0]
        self.fusion_order = fusion_order
        self.label_mix = label_mix
        self.attention_input = attention_input
        self.test_output = test_output
        self.with_maps = with_maps
        self.maps_topk = maps_topk

        conv_kw = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.reduce_convs = nn.ModuleList(
            ConvModule(c, self.channels, 1, **conv_kw)
            for c in self.in_channels)
        attn_in = self.channels if attention_input == 'reduced' \
            else self.in_channels[-1]
        self.attention = nn.Sequential(
            ConvModule(attn_in, attention_channels, attention_kernel_size,
                       padding=attention_kernel_size // 2, **conv_kw),
            # No bias: a constant added to every position before the
            # spatial softmax cannot change A (its gradient is exactly 0).
            nn.Conv2d(attention_channels, 1, 1, bias=False))
        self.zero_init_attention = zero_init_attention
        self._zero_attention_output()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.spatial_cls = nn.Conv2d(self.channels * len(self.in_channels),
                                     num_classes, 1)

        target, spatial, attention = self_supervision_parts(
            self_supervision)
        #: ``'self'``, ``'label'`` or None (self-supervision off).
        self.self_supervision_target = target
        self.spatial_loss = MODELS.build(spatial) if spatial else None
        self.attention_loss = MODELS.build(attention) if attention else None
        #: What the classifier hands :meth:`loss`: the maps of the un-mixed
        #: batch (self-annotated targets), and the CutMix geometry (the
        #: option that needs it, and the setting that turns it off).
        self.needs_unmixed_batch = target == 'self'
        self.needs_mix_geometry: Optional[Tuple[str, str]] = (
            ('head.self_supervision', 'head.self_supervision=None')
            if target else
            ("head.label_mix='attention'", "head.label_mix='area'")
            if label_mix == 'attention' else None)
        self.gapfc = None
        if distillation is not None:
            self.gapfc = nn.Linear(self.in_channels[-1], num_classes)
            self.distill_loss, self.gapfc_loss = build_distillation_losses(
                distillation, loss)

    # ------------------------------------------------------------------ build
    def _zero_attention_output(self) -> None:
        if self.zero_init_attention:
            nn.init.zeros_(self.attention[-1].weight)

    #: State-dict keys of earlier mmsaol versions that this head no longer
    #: has, relative to the head. Loading drops them (see
    #: ``_load_from_state_dict``); ``CheckpointMatchHook`` does not count
    #: them as keys the model lacks.
    OBSOLETE_STATE_KEYS: Tuple[str, ...] = (
        # mmsaol 0.1.0 gave the attention output conv a bias; a constant
        # before the spatial softmax never changes A, so the weight was
        # removed. Dropping it loads 0.1.0 checkpoints with identical
        # outputs.
        'attention.1.bias', )

    def _load_from_state_dict(self, state_dict: dict, prefix: str,
                              *args, **kwargs) -> None:
        for key in self.OBSOLETE_STATE_KEYS:
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(self) -> None:
        """Apply ``init_cfg`` (also a model-level one), then restore the
        zero attention output conv so training starts from uniform
        attention whatever the initialiser did to every ``Conv2d``."""
        super().init_weights()
        self._zero_attention_output()

    # ---------------------------------------------------------------- forward
    def _check_feats(self, feats) -> Tuple[Tensor, ...]:
        """The stage maps as a tuple, checked (:func:`check_stage_maps`)."""
        return check_stage_maps(feats, self.in_channels)

    def _fused_map(self, feats: Tuple[Tensor, ...]) -> Tuple[Tensor, Tensor]:
        """Reduced, resized and concatenated multi-scale map, and the reduced
        last map."""
        grid = feats[-1].shape[-2:]
        reduced = []
        for conv, feat in zip(self.reduce_convs, feats):
            if self.fusion_order == 'resize_then_reduce' and \
                    feat.shape[-2] >= grid[0] and feat.shape[-1] >= grid[1]:
                # Pool first: the 1x1 conv then runs on the small grid.
                reduced.append(conv(resize_to_grid(feat, grid)))
            else:
                reduced.append(resize_to_grid(conv(feat), grid))
        return torch.cat(reduced, dim=1), reduced[-1]

    def _fused_and_attention(self, feats: Tuple[Tensor, ...]
                             ) -> Tuple[Tensor, Tensor]:
        """Fused multi-scale map and ``log A`` of checked stage maps."""
        fused, reduced_last = self._fused_map(feats)
        attn_in = reduced_last if self.attention_input == 'reduced' \
            else feats[-1]
        return fused, log_spatial_softmax(self.attention(attn_in))

    def saol_outputs(self, feats: Tuple[Tensor, ...]) -> SAOLOutputs:
        """Attention map, spatial posteriors and output of a batch.

        Args:
            feats (tuple[Tensor]): Stage maps from the backbone.

        Returns:
            SAOLOutputs: all maps, in float32.
        """
        feats = self._check_feats(feats)
        fused, log_attention = self._fused_and_attention(feats)
        log_spatial = log_class_softmax(self.spatial_cls(self.dropout(fused)))
        return SAOLOutputs(log_attention, log_spatial,
                           saol_log_output(log_attention, log_spatial),
                           feats[-1])

    def gapfc_logits(self, last_feat: Tensor) -> Tensor:
        """Logits of the GAP-FC branch on the last map."""
        if self.gapfc is None:
            raise RuntimeError(
                'This SAOLHead has no GAP-FC branch; set head.distillation.')
        # float32 logits: CPU autocast would keep the loss's log-softmax in
        # bfloat16.
        return self.gapfc(last_feat.mean(dim=(2, 3))).float()

    def pre_logits(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """Attention-pooled fused feature ``sum_ij A_ij F_ij``, ``(N, C)``:
        the image embedding SAOL classifies (used by feature extraction)."""
        fused, log_attention = self._fused_and_attention(
            self._check_feats(feats))
        attention = log_attention.exp()
        return torch.einsum('nchw,nhw->nc', fused.float(), attention)

    def forward(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """``log y`` of SAOL, or the GAP-FC logits when
        ``test_output='gapfc'``. Either way ``softmax`` of it is the
        prediction."""
        if self.test_output == 'gapfc':
            return self.gapfc_logits(self._check_feats(feats)[-1])
        return self.saol_outputs(feats).log_probs

    # ------------------------------------------------------------------- loss
    def loss(self, feats: Tuple[Tensor, ...], data_samples: List[DataSample],
             mix: Optional[MixContext] = None) -> dict:
        """Losses of a training batch: ``ClsHead.loss`` on SAOL's output
        ``log y``, plus the terms the config switches on.

        Args:
            feats (tuple[Tensor]): Stage maps of the (mixed) batch.
            data_samples (List[DataSample]): Samples with ``gt_label`` /
                ``gt_score``.
            mix (MixContext, optional): How the batch was mixed, handed over
                by :class:`SAOLClassifier` (its CutMix geometry and, for
                ``self_supervision.target='self'``, SAOL's maps of the
                un-mixed batch). ``self_supervision`` and
                ``label_mix='attention'`` need it.

        Returns:
            dict[str, Tensor]: ``loss_cls`` and, when enabled,
            ``loss_gapfc`` and ``loss_distill`` (:meth:`_distillation_losses`),
            ``loss_spatial`` and ``loss_attention``
            (:meth:`_location_losses`). mmpretrain's ``ClsHead`` names its
            one term ``loss``; SAOL's classification term is ``loss_cls``
            because mmengine's ``parse_losses`` logs the sum of all terms as
            ``loss``, which a term of that name would overwrite in the log.
        """
        out = self.saol_outputs(feats)
        target = classification_target(data_samples, self.num_classes)
        pasting = self._pasting(mix, out, data_samples)
        saol_target = target
        if self.label_mix == 'attention' and pasting is not None:
            saol_target = self._attention_mixed_target(out, mix, pasting)
        losses = dict(loss_cls=self.loss_module(
            out.log_probs, saol_target, avg_factor=len(data_samples)))
        if self.gapfc is not None:
            losses.update(self._distillation_losses(out, target))
        if self.self_supervision_target is not None:
            losses.update(self._location_losses(out, mix, pasting))
        if self.cal_acc:
            losses.update(self._accuracy(out.log_probs, target))
        return losses

    def _accuracy(self, scores: Tensor, target: Tensor) -> dict:
        from mmpretrain.evaluation.metrics import Accuracy
        if target.ndim != 1:
            raise ValueError('head.cal_acc=True needs hard labels; turn it '
                             'off when training with batch augments.')
        acc = Accuracy.calculate(scores, target, topk=self.topk)
        return {f'accuracy_top-{k}': a for k, a in zip(self.topk, acc)}

    def _distillation_losses(self, out: SAOLOutputs, target: Tensor
                             ) -> dict:
        """The GAP-FC branch: its own loss on the ground truth
        (``loss_gapfc``) and its distillation from SAOL's output
        (``loss_distill``, :class:`SelfDistillLoss`)."""
        logits = self.gapfc_logits(out.last_feat)
        return dict(
            loss_gapfc=self.gapfc_loss(logits, target,
                                       avg_factor=logits.size(0)),
            loss_distill=self.distill_loss(logits, out.log_probs))

    def _pasting(self, mix: Optional[MixContext], out: SAOLOutputs,
                 data_samples: List[DataSample]) -> Optional[Pasting]:
        """Where a CutMix batch was pasted, on this head's grid and device,
        when a term of the loss needs it; None for a batch that
        GeometryCutMix did not mix, or when nothing needs it."""
        if mix is None and self.self_supervision_target is not None:
            raise ValueError(
                "head.self_supervision needs model.type='SAOLClassifier' (it "
                'carries the CutMix geometry to the head and computes the '
                'un-mixed maps; otherwise the location losses would silently '
                'stay 0), or set head.self_supervision=None.')
        if mix is None and self.label_mix == 'attention':
            raise ValueError(
                "head.label_mix='attention' needs model.type="
                "'SAOLClassifier' (it carries the CutMix geometry to the "
                'head; otherwise the labels would silently stay area-mixed), '
                "or set head.label_mix='area'.")
        if self.needs_mix_geometry is None or mix is None or \
                mix.geometry is None:
            return None
        geometry, device = mix.geometry, out.log_attention.device
        return Pasting(
            coverage=box_to_cell_coverage(geometry.boxes.to(device),
                                          geometry.image_size,
                                          out.log_attention.shape[-2:]),
            partner=geometry.partner.to(device).long(),
            labels=torch.cat([s.gt_label for s in data_samples]).to(device))

    def _attention_mixed_target(self, out: SAOLOutputs, mix: MixContext,
                                pasting: Pasting) -> Tensor:
        """``label_mix='attention'``: :func:`attention_mixed_labels` with the
        pasted self-annotated attention target (mode ``'self'``) or else
        the mixed image's own attention."""
        if mix.unmixed is not None:
            attention = self_annotated_attention_target(
                mix.unmixed, pasting.partner, pasting.coverage)
        else:
            attention = out.log_attention.exp()
        return attention_mixed_labels(pasting.labels, self.num_classes,
                                      attention, pasting.partner,
                                      pasting.coverage)

    def _location_losses(self, out: SAOLOutputs, mix: MixContext,
                         pasting: Optional[Pasting]) -> dict:
        """CutMix location-specific self-supervision (paper Sec. 3): the
        mixed image's spatial posteriors (``loss_spatial``) and attention
        (``loss_attention``) against the targets of
        :func:`label_map_target` (mode ``'label'``) or
        :func:`self_annotated_spatial_target` and
        :func:`self_annotated_attention_target` (mode ``'self'``)."""
        if pasting is None:
            # Mixup / identity batch: nothing was pasted. Exact zeros that
            # stay in the graph keep the logged keys and DDP stable.
            zero = out.log_spatial.sum() * 0.0
            return {name: zero for name, loss in (
                ('loss_spatial', self.spatial_loss),
                ('loss_attention', self.attention_loss)) if loss}
        partner, coverage = pasting.partner, pasting.coverage
        if self.self_supervision_target == 'label':
            return dict(loss_spatial=self.spatial_loss(
                out.log_spatial, label_map_target(
                    pasting.labels, self.num_classes, partner, coverage)))
        if mix.unmixed is None:
            raise RuntimeError(
                "head.self_supervision.target='self' needs SAOL's maps of "
                "the un-mixed batch, which model.type='SAOLClassifier' "
                'computes; or set self_supervision.target=\'label\'.')
        losses = {}
        if self.spatial_loss is not None:
            losses['loss_spatial'] = self.spatial_loss(
                out.log_spatial, self_annotated_spatial_target(
                    mix.unmixed, partner, coverage))
        if self.attention_loss is not None:
            losses['loss_attention'] = self.attention_loss(
                out.log_attention, self_annotated_attention_target(
                    mix.unmixed, partner, coverage))
        return losses

    # ---------------------------------------------------------------- predict
    def predict(self,
                feats: Tuple[Tensor, ...],
                data_samples: Optional[List[Optional[DataSample]]] = None,
                with_maps: Optional[bool] = None) -> List[DataSample]:
        """Predict, and optionally attach SAOL's maps to every sample.

        Args:
            feats (tuple[Tensor]): Stage maps from the backbone.
            data_samples (List[DataSample], optional): Samples to fill.
            with_maps (bool, optional): Attach ``attention_map`` ``(h, w)``,
                ``class_maps`` ``(k, h, w)`` (``A * Y_c`` of the top-k
                predicted classes of the reported branch) and
                ``class_map_labels`` ``(k,)``. Defaults to ``self.with_maps``.

        Returns:
            List[DataSample]: samples with ``pred_score``/``pred_label``.
        """
        with_maps = self.with_maps if with_maps is None else with_maps
        if not with_maps:
            return self._get_predictions(self(feats), data_samples)
        out = self.saol_outputs(feats)
        scores = out.log_probs if self.test_output == 'saol' \
            else self.gapfc_logits(out.last_feat)
        samples = self._get_predictions(scores, data_samples)
        k = min(self.maps_topk, self.num_classes)
        top = scores.topk(k, dim=1).indices
        attach_maps(samples, class_maps(out.log_attention, out.log_spatial,
                                        top),
                    top, attention=out.log_attention.exp())
        return samples
