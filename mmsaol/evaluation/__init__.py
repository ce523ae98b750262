"""Weakly-supervised localisation: the protocol as pure functions and the
``WSOLMetric`` (registered in mmpretrain's METRICS)."""
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
from .wsol_metric import WSOLMetric

__all__ = [
    'WSOLMetric', 'box_iou', 'boxes_from_map', 'image_map',
    'largest_component_box', 'localization_ious', 'normalize_map',
    'peak_in_boxes', 'scale_boxes', 'upsample_map'
]
