"""Weakly-supervised localisation: the standard protocol (Choe et al., CVPR
2020) as pure functions and the ``WSOLMetric`` (registered in mmpretrain's
METRICS)."""
from .wsol import (
    FRAME_SIZE,
    V2_IOUS,
    best_box_ious,
    box_iou,
    boxes_at_thresholds,
    boxes_to_frame,
    frame_scoremap,
    image_map,
    mask_to_frame,
    max_box_acc,
    normalize_scoremap,
    peak_in_boxes,
    pxap,
    score_histograms,
    threshold_list,
    upsample_map,
)
from .wsol_metric import WSOLMetric

__all__ = [
    'FRAME_SIZE', 'V2_IOUS', 'WSOLMetric', 'best_box_ious', 'box_iou',
    'boxes_at_thresholds', 'boxes_to_frame', 'frame_scoremap', 'image_map',
    'mask_to_frame', 'max_box_acc', 'normalize_scoremap', 'peak_in_boxes',
    'pxap', 'score_histograms', 'threshold_list', 'upsample_map'
]
