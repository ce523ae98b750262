"""Model configs made from another model's config: the GAP-FC twin of a
SAOL model and, the other way, a model that attaches maps.

A GAP-FC model is mmpretrain's ``ImageClassifier`` with a
``GlobalAveragePooling`` neck and a ``LinearClsHead``. Two tools need the
GAP-FC model on the backbone of a SAOL config (:func:`gapfc_twin`): the
export of the self-distilled GAP-FC branch as stock mmpretrain, and the
benchmark's baseline. The reverse direction, :func:`maps_config`, turns a
GAP-FC model into one that draws class activation maps (``CAMHead``) and a
SAOL model into one that attaches its attention and class maps.

Component types move between mmsaol's and mmpretrain's with
:func:`mmsaol.compat.config.replace_types` and the tables
:data:`STOCK_MODEL_TYPES` (mmsaol's model components to their stock
counterparts) and :data:`GEOMETRY_CUTMIX` (mmpretrain's ``CutMix`` to the
``GeometryCutMix`` that SAOL's self-supervision reads).
"""
from __future__ import annotations

import copy
from typing import Any, Union

from mmengine.config import Config
from mmpretrain.registry import MODELS

from .compat.config import TypeTable, replace_types
from .models.batch_augments.cutmix import GeometryCutMix
from .models.batch_augments.data_preprocessor import SAOLDataPreprocessor
from .models.classifiers.saol_classifier import SAOLClassifier
from .models.heads.cam_head import CAMHead
from .models.heads.saol_head import SAOLHead

#: The parts of a GAP-FC model.
GAPFC_CLASSIFIER = 'ImageClassifier'
GAPFC_NECK = 'GlobalAveragePooling'
GAPFC_HEAD = 'LinearClsHead'
#: Head types :func:`maps_config` draws as SAOL's maps or as CAMs.
SAOL_HEADS = (SAOLHead.__name__, )
GAPFC_HEADS = (GAPFC_HEAD, CAMHead.__name__)
#: mmsaol's model components and the stock mmpretrain type that replaces
#: each, with the arguments only the mmsaol type accepts.
#: ``GeometryCutMix`` is mmpretrain's ``CutMix`` plus bookkeeping for SAOL
#: (``per_sample_box=True`` becomes CutMix's one box per batch).
STOCK_MODEL_TYPES: TypeTable = {
    SAOLClassifier.__name__: (GAPFC_CLASSIFIER, ('unmixed_norm', )),
    SAOLDataPreprocessor.__name__: ('ClsDataPreprocessor', ()),
    GeometryCutMix.__name__: ('CutMix', GeometryCutMix.EXTRA_ARGS),
}
#: mmpretrain's ``CutMix`` as the ``GeometryCutMix`` SAOL reads.
GEOMETRY_CUTMIX: TypeTable = {'CutMix': (GeometryCutMix.__name__, ())}


def type_name(component: Any) -> str:
    """The type of a component config (a name, or a class in a
    pure-Python config) as a name."""
    kind = component.get('type')
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '')


def is_saol_head(head_type: Any) -> bool:
    """Whether a head type (a registered name or a class) is
    :class:`SAOLHead` or a subclass of it."""
    head_cls = head_type if isinstance(head_type, type) else \
        MODELS.get(head_type) if head_type else None
    return isinstance(head_cls, type) and issubclass(head_cls, SAOLHead)


def gapfc_twin(model: dict) -> dict:
    """The stock GAP-FC model config on a SAOL model's backbone.

    ``ImageClassifier`` with the same backbone (returning only its last
    stage), ``GlobalAveragePooling`` and a ``LinearClsHead`` with the SAOL
    head's classes, ``topk`` and the loss of its GAP-FC branch
    (``distillation.gt_loss``, else the head's ``loss``); the data
    preprocessor, ``train_cfg`` and ``init_cfg`` carry over with mmsaol's
    types replaced by mmpretrain's (:data:`STOCK_MODEL_TYPES`).

    Args:
        model (dict): A SAOL classifier config (not changed).

    Returns:
        dict: the GAP-FC classifier config.

    Raises:
        ValueError: ``model.head`` is not a :class:`SAOLHead`.
    """
    head = model['head']
    if not is_saol_head(head.get('type')):
        raise ValueError(
            f"model.head.type is {head.get('type')!r}, not SAOLHead: only "
            'a SAOL model has a GAP-FC twin; give a SAOL config.')
    in_channels = head['in_channels']
    last_channels = in_channels if isinstance(in_channels, int) \
        else in_channels[-1]
    backbone = copy.deepcopy(model['backbone'])
    out_indices = backbone.get('out_indices')
    if isinstance(out_indices, (list, tuple)):
        # SAOL reads several stages; the GAP-FC branch only the last one.
        backbone['out_indices'] = (out_indices[-1], )
    loss = (head.get('distillation') or {}).get('gt_loss', head.get('loss'))
    linear_head = dict(type=GAPFC_HEAD, num_classes=head['num_classes'],
                       in_channels=last_channels)
    if loss is not None:
        linear_head['loss'] = copy.deepcopy(loss)
    if 'topk' in head:
        linear_head['topk'] = head['topk']
    twin = dict(type=GAPFC_CLASSIFIER, backbone=backbone,
                neck=dict(type=GAPFC_NECK), head=linear_head)
    for key in ('data_preprocessor', 'train_cfg', 'init_cfg'):
        if model.get(key) is not None:
            twin[key] = copy.deepcopy(model[key])
    replace_types(twin, STOCK_MODEL_TYPES)
    return twin


def maps_config(cfg: Config, topk: Union[int, str, None] = None) -> Config:
    """A copy of ``cfg`` whose model attaches maps to its predictions.

    - ``SAOLHead``: ``head.with_maps=True``, which attaches the attention map
      and the class maps ``A * Y_c``.
    - GAP-FC (``LinearClsHead`` after ``GlobalAveragePooling`` or no neck):
      the head becomes :class:`CAMHead` and the neck ``None`` (the head
      pools the last map itself), which attaches class activation maps.
      The parameters are the same, so the same checkpoint loads.

    Args:
        cfg (Config): A full config (``model`` at least).
        topk (int | str, optional): Class maps per image
            (``head.maps_topk``); ``'all'`` for one per class (what GT-known
            localisation needs). Defaults to the head's own default.

    Returns:
        Config: the modified copy.
    """
    cfg = copy.deepcopy(cfg)
    head = cfg.model.head
    head_type = type_name(head)
    if head_type in GAPFC_HEADS:
        neck = cfg.model.get('neck')
        neck_type = neck and neck.get('type')
        if neck is not None and neck_type != GAPFC_NECK:
            raise ValueError(
                f'Class activation maps need the last feature map, but '
                f'model.neck is {neck_type!r}: only {GAPFC_NECK} (or no '
                'neck) can be dropped for CAMHead to pool by itself.')
        cfg.model.neck = None
        head.type = CAMHead.__name__
    elif head_type not in SAOL_HEADS:
        raise ValueError(
            f'Maps need model.head.type SAOLHead or a GAP-FC {GAPFC_HEAD} '
            f'(drawn as CAM), got {head_type!r}.')
    head.with_maps = True
    if topk == 'all':
        head.maps_topk = int(head.num_classes)
    elif topk is not None:
        if not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive int or 'all', got "
                             f'{topk!r}.')
        head.maps_topk = topk
    return cfg
