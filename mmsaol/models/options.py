"""Config checks of SAOL's components, each failing with a sentence.

- :func:`check_options`: a misspelt key in a config dict
  (``self_supervison=...``) otherwise reaches the component's ``__init__``
  as a Python ``TypeError`` ("unexpected keyword argument") with no hint of
  the options that exist; it names the closest one.
- :func:`check_saol_head_options`, :func:`self_supervision_parts` and
  :func:`check_stage_maps`: what ``SAOLHead`` accepts, and whether the
  backbone's maps fit it, each error naming the config field to change.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from torch import Tensor

from ..checks import check_choice

F = TypeVar('F', bound=Callable)

SELF_SUPERVISION_TARGETS = ('self', 'label')
TEST_OUTPUTS = ('saol', 'gapfc')
ATTENTION_INPUTS = ('reduced', 'last')
FUSION_ORDERS = ('resize_then_reduce', 'reduce_then_resize')
LABEL_MIXES = ('area', 'attention')

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
          inspect.Parameter.KEYWORD_ONLY)


def _accepted(cls: type) -> Tuple[List[str], bool]:
    """The keyword options ``cls(...)`` accepts, following ``**kwargs`` up
    the base classes; and whether some ``__init__`` takes any keyword."""
    names: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        init = inspect.unwrap(init)
        if klass is object:
            return names, False
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params
                  if p.kind in _NAMED and p.name != 'self'
                  and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def _closest(key: str, names: List[str]) -> List[str]:
    """The option ``key`` most likely meant: the same words in another
    order (``topk_maps`` -> ``maps_topk``), else the closest spelling."""
    words = sorted(key.split('_'))
    same = [n for n in names if sorted(n.split('_')) == words]
    return same or difflib.get_close_matches(key, names, n=1)


def check_options(init: F) -> F:
    """Decorate a component's ``__init__`` so that an unknown keyword raises
    ``ValueError`` naming it, the closest valid option and all options."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        names, open_ended = _accepted(type(self))
        unknown = [k for k in kwargs if k not in names]
        if unknown and not open_ended:
            hints = []
            for key in unknown:
                close = _closest(key, names)
                hints.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)'
                                           if close else ''))
            raise ValueError(
                f'{type(self).__name__} has no option '
                f'{", ".join(hints)}. Its options are: '
                f'{", ".join(sorted(names))}.')
        return init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def positive_ints(value, name: str) -> Tuple[int, ...]:
    """``value`` (an int or a list of ints) as a tuple of positive ints."""
    values = (value, ) if isinstance(value, int) else tuple(value)
    if not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f'{name} must be a positive int or a non-empty list '
                         f'of positive ints, got {value!r}.')
    return values


def check_saol_head_options(num_classes, attention_channels,
                            attention_input: str, fusion_order: str,
                            label_mix: str, dropout: float,
                            test_output: str,
                            distillation: Optional[dict]) -> None:
    """Check the options of ``SAOLHead`` that its layers do not check.

    Args:
        num_classes: ``head.num_classes``.
        attention_channels: ``head.attention_channels`` (its default
            resolved).
        attention_input (str): ``head.attention_input``.
        fusion_order (str): ``head.fusion_order``.
        label_mix (str): ``head.label_mix``.
        dropout (float): ``head.dropout``.
        test_output (str): ``head.test_output``.
        distillation (dict, optional): ``head.distillation``.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError('SAOLHead: num_classes must be a positive int '
                         f'(the number of classes), got {num_classes!r}.')
    positive_ints(attention_channels, 'head.attention_channels')
    check_choice(attention_input, ATTENTION_INPUTS, 'head.attention_input')
    check_choice(test_output, TEST_OUTPUTS, 'head.test_output')
    check_choice(fusion_order, FUSION_ORDERS, 'head.fusion_order')
    check_choice(label_mix, LABEL_MIXES, 'head.label_mix')
    if test_output == 'gapfc' and distillation is None:
        raise ValueError(
            "head.test_output='gapfc' needs the GAP-FC branch: set "
            'head.distillation=dict() (or test_output=\'saol\').')
    if not 0 <= dropout < 1:
        raise ValueError(f'head.dropout must be in [0, 1), got {dropout}.')


def self_supervision_parts(cfg: Optional[dict]
                           ) -> Tuple[Optional[str], Optional[dict],
                                      Optional[dict]]:
    """``(target, spatial loss config, attention loss config)`` of
    ``head.self_supervision`` (all None when it is None), defaults filled
    in: ``SpatialLogitsLoss``, and ``AttentionLoss`` for ``'self'``."""
    if cfg is None:
        return None, None, None
    cfg = dict(cfg)
    target = cfg.pop('target', 'self')
    if target not in SELF_SUPERVISION_TARGETS:
        raise ValueError('head.self_supervision.target must be one of '
                         f"{SELF_SUPERVISION_TARGETS} ('self': "
                         "self-annotated maps, 'label': label maps), got "
                         f'{target!r}.')
    spatial = cfg.pop('spatial_loss', dict(type='SpatialLogitsLoss'))
    attention = cfg.pop(
        'attention_loss',
        dict(type='AttentionLoss') if target == 'self' else None)
    if cfg:
        raise ValueError('head.self_supervision accepts only `target`, '
                         '`spatial_loss` and `attention_loss`, got '
                         f'{sorted(cfg)}.')
    if target == 'label' and attention is not None:
        raise ValueError(
            "head.self_supervision.target='label' gives no attention "
            'target; set self_supervision.attention_loss=None or use '
            "target='self'.")
    if spatial is None and attention is None:
        raise ValueError('head.self_supervision enables no loss: give '
                         'spatial_loss and/or attention_loss, or set '
                         'head.self_supervision=None.')
    return target, spatial, attention


def check_stage_maps(feats, in_channels: Sequence[int]
                     ) -> Tuple[Tensor, ...]:
    """The backbone output as a tuple of ``(N, C, H, W)`` maps whose
    channels are ``head.in_channels``; else a sentence naming the config
    field to change."""
    if isinstance(feats, Tensor):
        feats = (feats, )
    feats = tuple(feats)
    in_channels = tuple(in_channels)
    if not feats:
        raise ValueError(
            'SAOLHead received no feature map: backbone.out_indices '
            'selects no stage (ResNet, ResNeXt, RegNet and Swin ignore '
            'negative indices); use e.g. out_indices=(1, 2, 3).')
    for i, f in enumerate(feats):
        if f.ndim == 2:
            raise ValueError(
                f'SAOLHead needs (N, C, H, W) feature maps, but input {i} '
                f'is a pooled vector {tuple(f.shape)}. Set model.neck='
                'None (a pooling neck removes the grid SAOL works on) and '
                "use the backbone's map output: out_type='featmap' for "
                'VisionTransformer/DeiT/BEiT, gap_before_final_norm=False '
                'for ConvNeXt.')
        if f.ndim != 4:
            raise ValueError(
                f'SAOLHead needs (N, C, H, W) feature maps, but input {i} '
                f'has shape {tuple(f.shape)}; for token outputs set '
                "backbone.out_type='featmap'.")
    got = tuple(int(f.shape[1]) for f in feats)
    if len(got) != len(in_channels):
        raise ValueError(
            f'SAOLHead received {len(got)} feature maps (channels {got}) '
            f'but head.in_channels={in_channels} lists '
            f'{len(in_channels)}. Make backbone.out_indices and '
            'head.in_channels name the same stages, e.g. '
            f'head.in_channels={got}. If out_indices already lists '
            f'{len(in_channels)} stages, one is out of range and '
            'the backbone dropped it (ConvNeXt has 4 stages, ViT '
            'num_layers layers).')
    if got != in_channels:
        raise ValueError(
            f'head.in_channels={in_channels} does not match the '
            f'channels of the stages selected by backbone.out_indices, '
            f'{got}. Set head.in_channels={got}.')
    return feats
