"""Weakly-supervised localisation: the protocol as pure functions, the
``WSOLMetric`` (registered in mmpretrain's METRICS) and the configs that
switch maps on and evaluate them."""
from .wsol import (
    box_iou,
    boxes_from_map,
    image_map,
    largest_component_box,
    localization_ious,
    normalize_map,
    peak_in_boxes,
    scale_boxes,
    upsample_map,
)
from .wsol_eval import build_maps_model, maps_config, wsol_config
from .wsol_metric import WSOLMetric

__all__ = [
    'WSOLMetric', 'box_iou', 'boxes_from_map', 'build_maps_model',
    'image_map', 'largest_component_box', 'localization_ious', 'maps_config',
    'normalize_map', 'peak_in_boxes', 'scale_boxes', 'upsample_map',
    'wsol_config'
]
