"""ImageClassifier that feeds SAOL's self-annotated self-supervision."""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator, List, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.nn.modules.batchnorm import _BatchNorm

from ...checks import check_choice
from ...structures import MixContext, MixGeometry, SAOLOutputs
from ..batch_augments.data_preprocessor import (
    SAOLDataPreprocessor,
    geometry_augments,
)
from ..heads.saol_head import SAOLHead
from ..options import check_options

UNMIXED_NORM_MODES = ('batch', 'running')


@functools.lru_cache(maxsize=None)
def synced_norm_types() -> Tuple[type, ...]:
    """Norm layer classes whose training forward talks to the other ranks:
    torch's ``SyncBatchNorm`` (config ``SyncBN``) and, where full mmcv is
    installed, ``mmcv.ops.SyncBatchNorm`` (config ``MMSyncBN``; not a
    ``_BatchNorm``). mmcv-lite has no compiled ops, so no model there can
    hold mmcv's."""
    try:
        from mmcv.ops import SyncBatchNorm as MMCVSyncBatchNorm
    except ImportError:
        return (nn.SyncBatchNorm, )
    return (nn.SyncBatchNorm, MMCVSyncBatchNorm)


STOCHASTIC_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout, DropPath)


@contextlib.contextmanager
def frozen_norm_statistics(model: nn.Module, mode: str) -> Iterator[None]:
    """Run a deterministic forward that leaves no trace in the model.

    BatchNorm, ``mode='batch'``: normalise with the batch's own statistics,
    as the training forward does (so the un-mixed maps come from the same
    function as the mixed ones), but do not update ``running_mean``/
    ``running_var``/``num_batches_tracked``. ``mode='running'``: normalise
    with the running statistics (the evaluation-mode function).

    Dropout and DropPath (stochastic depth) are switched off either way: the
    self-annotated targets are the network's prediction, not a randomly
    thinned one.
    """
    norm_types = (_BatchNorm, ) + synced_norm_types()
    norms = [m for m in model.modules() if isinstance(m, norm_types)]
    stochastic = [m for m in model.modules()
                  if isinstance(m, STOCHASTIC_LAYERS)]
    mmcv_norms = [m for m in norms if not isinstance(m, _BatchNorm)]
    saved = [(m, m.training, getattr(m, 'track_running_stats', None))
             for m in norms + stochastic]
    momenta = [(m, m.momentum) for m in mmcv_norms]
    try:
        for m in norms:
            if mode == 'batch':
                m.track_running_stats = False
            else:
                m.eval()
        if mode == 'batch':
            # mmcv's SyncBatchNorm updates its running statistics in
            # training whatever track_running_stats says, by ``momentum``:
            # 0 keeps them.
            for m in mmcv_norms:
                m.momentum = 0.0
        for m in stochastic:
            m.eval()
        yield
    finally:
        for m, training, track in saved:
            m.train(training)
            if track is not None:
                m.track_running_stats = track
        for m, momentum in momenta:
            m.momentum = momentum


def _explain_out_indices(backbone) -> Optional[ValueError]:
    """A sentence for a backbone that failed to build on an
    ``out_indices`` entry past its last stage (ResNet, ResNeXt and RegNet
    only assert, Swin indexes out of range); None when that is not the
    cause."""
    if not isinstance(backbone, dict) or 'out_indices' not in backbone:
        return None
    indices = backbone['out_indices']
    indices = (indices, ) if isinstance(indices, int) else tuple(indices)
    cfg = dict(backbone, out_indices=(0, ))
    try:
        default = MODELS.build(cfg)
    except Exception:  # the caller re-raises the original error
        return None
    stages = getattr(default, 'num_stages', None) or \
        getattr(default, 'num_layers', None)
    if not isinstance(stages, int) or all(i < stages for i in indices):
        return None
    suggestion = tuple(range(max(stages - 3, 0), stages))
    return ValueError(
        f'backbone.out_indices={indices} names a stage the backbone does not '
        f'have: {type(default).__name__} here has {stages} stages, indices '
        f'0-{stages - 1}. Use e.g. backbone.out_indices={suggestion} and '
        'head.in_channels with their channels.')


@MODELS.register_module()
class SAOLClassifier(ImageClassifier):
    """:class:`ImageClassifier` for SAOL with CutMix self-supervision.

    Identical to ``ImageClassifier`` (same arguments, same checkpoints, same
    ``tensor``/``predict`` modes) except that:

    - its data preprocessor defaults to :class:`SAOLDataPreprocessor`, whose
      output holds :class:`GeometryCutMix`'s geometry under ``'mix'``, which
      mmengine hands to :meth:`forward` as ``mix``;
    - at build time it checks that a head that needs the geometry
      (``head.needs_mix_geometry``: ``self_supervision`` or
      ``label_mix='attention'``) has the augment and preprocessor that give
      it;
    - in ``loss`` it hands the head one :class:`~mmsaol.structures.MixContext`:
      the batch's CutMix geometry and, when the head asks for it
      (``head.needs_unmixed_batch``: self-supervision ``target='self'``),
      SAOL's maps of the un-mixed batch (a forward of backbone and head
      without gradient, only for CutMix batches), which the head cuts and
      pastes into its targets. With SyncBN
      in a multi-process run the ranks first agree (one flag all-reduce) so
      that all of them run that forward whenever one does.

    Args:
        unmixed_norm (str): How BatchNorm layers normalise the un-mixed
            forward: ``'batch'`` (default: batch statistics like the training
            forward, running statistics untouched, so the extra forward
            leaves no trace in the model) or ``'running'`` (evaluation-mode
            statistics). Dropout and DropPath are off in that forward.
        **kwargs: Arguments of :class:`ImageClassifier`.
    """

    @check_options
    def __init__(self, *args, unmixed_norm: str = 'batch', **kwargs) -> None:
        check_choice(unmixed_norm, UNMIXED_NORM_MODES, 'model.unmixed_norm')
        preprocessor = kwargs.get('data_preprocessor')
        if preprocessor is None or isinstance(preprocessor, dict):
            preprocessor = dict(preprocessor or {})
            preprocessor.setdefault('type', 'SAOLDataPreprocessor')
            kwargs['data_preprocessor'] = preprocessor
        try:
            super().__init__(*args, **kwargs)
        except (AssertionError, IndexError) as error:
            explained = _explain_out_indices(
                kwargs.get('backbone', args[0] if args else None))
            if explained is None:
                raise
            raise explained from error
        self.unmixed_norm = unmixed_norm
        if isinstance(self.data_preprocessor, SAOLDataPreprocessor):
            self.data_preprocessor.hands_mix = True
        needs = getattr(self.head, 'needs_mix_geometry', None)
        if needs:
            self._check_geometry(*needs)

    def _check_geometry(self, what: str, off: str) -> None:
        """``what`` needs GeometryCutMix's boxes handed to the head; ``off``
        is the setting that switches it off."""
        if not isinstance(self.data_preprocessor, SAOLDataPreprocessor):
            raise ValueError(
                f'{what} needs the CutMix geometry, which only '
                "SAOLDataPreprocessor carries: remove data_preprocessor.type "
                "or set it to 'SAOLDataPreprocessor' (got "
                f'{type(self.data_preprocessor).__name__}).')
        if not geometry_augments(self.data_preprocessor):
            raise ValueError(
                f'{what} is set but model.train_cfg.augments '
                'has no GeometryCutMix, so no batch would ever carry a pasted '
                "box: use train_cfg=dict(augments=dict(type='GeometryCutMix', "
                'alpha=1.0)) (it may sit in a list next to Mixup), or set '
                f'{off}.')

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor', mix: Optional[MixGeometry] = None
                ) -> Union[dict, list, torch.Tensor, tuple]:
        """``ImageClassifier.forward``, with the batch's CutMix geometry.

        Args:
            inputs (Tensor): ``(N, C, H, W)`` preprocessed batch.
            data_samples (List[DataSample], optional): Its samples.
            mode (str): ``'tensor'``, ``'predict'`` or ``'loss'``.
            mix (MixGeometry, optional): What :class:`GeometryCutMix` did to
                this training batch: the key ``'mix'`` of
                :class:`SAOLDataPreprocessor`'s output, which mmengine's
                ``train_step`` passes as a keyword argument; None for a batch
                it did not mix. Read in mode ``'loss'`` only.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples, mix)
        return super().forward(inputs, data_samples, mode)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             mix: Optional[MixGeometry] = None) -> dict:
        """Losses of a batch: ``ImageClassifier.loss`` with the head handed
        the batch's :class:`~mmsaol.structures.MixContext` (``mix``: see
        :meth:`forward`)."""
        unmixed = None
        if getattr(self.head, 'needs_unmixed_batch', False) and \
                self._unmixed_forward_anywhere(mix is not None,
                                               inputs.device):
            # Before the mixed forward, so its activations are freed before
            # the training graph is built. A rank whose batch was not
            # CutMixed runs the same forward on its own batch (and drops it)
            # so that synchronised norms see matching collectives.
            unmixed = self.unmixed_outputs(
                inputs if mix is None else mix.unmixed)
            if mix is None:
                unmixed = None
        if not isinstance(self.head, SAOLHead):  # e.g. a GAP-FC control
            return self.head.loss(self.extract_feat(inputs), data_samples)
        return self.head.loss(self.extract_feat(inputs), data_samples,
                              mix=MixContext(mix, unmixed))

    def unmixed_outputs(self, inputs: torch.Tensor) -> SAOLOutputs:
        """SAOL's maps of the un-mixed batch, the input of the
        self-annotated targets.

        Backbone and head run without gradient, with BN statistics
        untouched and Dropout/DropPath off (see
        :func:`frozen_norm_statistics`).

        Args:
            inputs (Tensor): ``(N, C, H, W)`` the batch before pasting.

        Returns:
            SAOLOutputs: the maps, with ``last_feat=None`` (no target reads
            the backbone map, so it is not kept through the training step).
        """
        with torch.no_grad(), frozen_norm_statistics(self, self.unmixed_norm):
            outputs = self.head.saol_outputs(self.extract_feat(inputs))
        return outputs._replace(last_feat=None)

    def _unmixed_forward_anywhere(self, local: bool,
                                  device: torch.device) -> bool:
        """Whether any rank runs the un-mixed forward this step.

        Only a model with synchronised norms (SyncBN) in a multi-process
        run needs to ask: their forward is a collective, so every rank must
        run it as often as the others even when the ranks drew different
        batch augments (``randomness.diff_rank_seed=True``, or Mixup next
        to CutMix). One all-reduce of a flag per step; every other model
        (and ``unmixed_norm='running'``, whose norms do not synchronise in
        that forward) returns ``local`` without communicating.
        """
        if self.unmixed_norm != 'batch' or \
                not (dist.is_available() and dist.is_initialized()) or \
                dist.get_world_size() < 2 or not any(
                    isinstance(m, synced_norm_types())
                    for m in self.modules()):
            return local
        flag = torch.tensor([int(local)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
