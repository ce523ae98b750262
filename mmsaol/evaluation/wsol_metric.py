"""Weakly-supervised object localisation metric (the standard protocol)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from ..checks import check_choice
from ..structures import ATTENTION_MAP, CLASS_MAP_LABELS, CLASS_MAPS
from .wsol import (
    FRAME_SIZE,
    V2_IOUS,
    best_box_ious,
    boxes_to_frame,
    frame_scoremap,
    mask_to_frame,
    max_box_acc,
    peak_in_boxes,
    pxap,
    score_histograms,
    threshold_list,
)

MAP_KINDS = ('class', 'attention')


def _iou_name(iou: float) -> str:
    return f'iou{round(iou * 100):d}'


@METRICS.register_module()
class WSOLMetric(BaseMetric):
    """Localisation of class or attention maps by the standard WSOL
    protocol: MaxBoxAcc, MaxBoxAccV2 and PxAP.

    "Evaluating Weakly Supervised Object Localization Methods Right" (Choe
    et al., CVPR 2020, `arXiv:2001.07437
    <https://arxiv.org/abs/2001.07437>`_), step by step as their reference
    code (see :mod:`mmsaol.evaluation.wsol`): the map of the true class
    (GT-known) is resized bicubically to the 224x224 evaluation frame and
    min-max normalised; boxes are scaled to the frame with integer
    truncation; 8-bit thresholds, OpenCV contours, inclusive-pixel IoU; one
    best threshold for the whole split. The test pipeline must resize the
    whole image (no crop, no padding), as the protocol's does.

    Reads from every sample: ``class_maps`` + ``class_map_labels``
    (``SAOLHead``, ``CAMHead`` or ``GradCAMClassifier``) or
    ``attention_map`` (``SAOLHead``), ``gt_label``, ``pred_label``,
    ``ori_shape`` and the metainfo ``gt_bbox`` (``(4,)`` or ``(M, 4)``
    boxes ``x0, y0, x1, y1`` in ``ori_shape`` pixels) or ``gt_mask_paths``
    and ``gt_ignore_path`` (mask files, see ``WSOLMetadataDataset``).

    Reports, in percent (prefix ``wsol/``):

    - ``max_box_acc``: MaxBoxAcc (V1), largest contour, IoU ``iou_thr``
      (0.5), and ``max_box_acc_thr``, the threshold reaching it;
    - ``max_box_acc_v2``: MaxBoxAccV2, every contour, the mean over
      ``iou_thrs`` (0.3/0.5/0.7) of ``max_box_acc_v2_iouXX`` (each at its
      own best threshold);
    - ``pxap``: PxAP, with masks instead of boxes (no box metric then);
    - extra metrics, not the protocol's: ``gt_known_loc`` (largest contour
      of the true class's map correct at the fixed ``threshold``) and
      ``top1_loc`` (the same for the predicted class's map, and the
      prediction right), as older papers report them; ``peak_in_box``: the
      pointing game, the true class's map's maximum (in the frame) inside a
      ground-truth box.

    Args:
        map (str): ``'class'`` (default): the class map of the true /
            predicted class (SAOL's ``A * Y_c``, a CAM or a Grad-CAM);
            ``'attention'``: SAOL's class-agnostic attention map ``A``.
        threshold_interval (float): Step of the threshold sweep
            ``np.arange(0, 1, step)``. Defaults to 0.01 (the protocol's
            command line; its training config uses 0.001).
        iou_thr (float): IoU of MaxBoxAcc and the extra metrics. Defaults
            to 0.5.
        iou_thrs (Sequence[float]): IoUs averaged by MaxBoxAccV2. Defaults
            to ``(0.3, 0.5, 0.7)``.
        threshold (float): Fixed threshold of ``gt_known_loc`` /
            ``top1_loc``. Defaults to 0.2 (CAM's 20% of the maximum).
        frame_size (int): Side of the evaluation frame. Defaults to 224
            (the protocol's).
        collect_device (str): Device to gather results across ranks.
            Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix. Defaults to ``'wsol'``.
    """

    default_prefix = 'wsol'

    def __init__(self,
                 map: str = 'class',
                 threshold_interval: float = 0.01,
                 iou_thr: float = 0.5,
                 iou_thrs: Sequence[float] = V2_IOUS,
                 threshold: float = 0.2,
                 frame_size: int = FRAME_SIZE,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        check_choice(map, MAP_KINDS, 'WSOLMetric.map')
        if not 0 <= threshold < 1:
            raise ValueError('WSOLMetric.threshold is on the min-max '
                             f'normalised map and must be in [0, 1), got '
                             f'{threshold}.')
        if not 0 < threshold_interval < 1:
            raise ValueError('WSOLMetric.threshold_interval must be in '
                             f'(0, 1), got {threshold_interval}.')
        ious = (iou_thr, *iou_thrs)
        if not iou_thrs or not all(0 < t <= 1 for t in ious):
            raise ValueError('WSOLMetric.iou_thr and iou_thrs must be in '
                             f'(0, 1], got {iou_thr} and {tuple(iou_thrs)}.')
        if int(frame_size) < 1:
            raise ValueError('WSOLMetric.frame_size must be a positive '
                             f'number of pixels, got {frame_size}.')
        self.map = map
        self.thresholds = threshold_list(threshold_interval)
        self.iou_thr = float(iou_thr)
        self.iou_thrs = tuple(float(t) for t in iou_thrs)
        self.threshold = float(threshold)
        self.frame = (int(frame_size), int(frame_size))

    # ---------------------------------------------------------------- inputs
    def _num_classes_hint(self) -> str:
        classes = (self.dataset_meta or {}).get('classes')
        return str(len(classes)) if classes else 'the number of classes'

    def _map(self, sample: dict, label: int) -> torch.Tensor:
        """The map scored for ``label`` (ignored for attention)."""
        if self.map == 'attention':
            if ATTENTION_MAP not in sample:
                raise ValueError(
                    "WSOLMetric(map='attention') needs the samples' "
                    'attention_map: evaluate a SAOLHead model with '
                    'model.head.with_maps=True.')
            return sample[ATTENTION_MAP]
        if CLASS_MAPS not in sample:
            raise ValueError(
                "WSOLMetric(map='class') needs the samples' class_maps: set "
                'model.head.with_maps=True (SAOLHead; for a GAP-FC model, '
                "model.head.type='CAMHead' and model.neck=None).")
        labels = torch.as_tensor(sample[CLASS_MAP_LABELS]).tolist()
        if label not in labels:
            raise ValueError(
                f'The sample has no class map of class {label}: the head '
                f'attached the maps of its top-{len(labels)} classes only. '
                'Set model.head.maps_topk='
                f'{self._num_classes_hint()} so that the true class always '
                'has a map.')
        return sample[CLASS_MAPS][labels.index(label)]

    def _gt_boxes(self, sample: dict) -> np.ndarray:
        """Ground-truth boxes in the evaluation frame."""
        boxes = torch.as_tensor(sample['gt_bbox']).detach().cpu().numpy()
        if boxes.size == 0 or boxes.size % 4:
            raise ValueError('gt_bbox must be (4,) or (M, 4) boxes (x0, y0, '
                             f'x1, y1), got shape {boxes.shape}.')
        height, width = sample['ori_shape'][:2]
        return boxes_to_frame(boxes, (width, height), self.frame)

    def _gt_masks(self, sample: dict):
        """Foreground (union of instances) and ignore region in the frame.
        """
        masks = []
        for path in [*sample['gt_mask_paths'],
                     sample.get('gt_ignore_path')]:
            if path is None:
                masks.append(None)
                continue
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError(f'Cannot read the mask file {path!r}; '
                                 'check mask_root of the data set.')
            masks.append(mask_to_frame(image, self.frame))
        foreground = np.any(np.stack(masks[:-1]), axis=0)
        return foreground, masks[-1]

    # -------------------------------------------------------------- process
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Score every sample of a batch; keep per-threshold correctness
        (boxes) or score histograms (masks).

        Args:
            data_batch: The batch from the data loader (unused).
            data_samples (Sequence[dict]): Outputs of the model.
        """
        fixed = np.array([self.threshold])
        for sample in data_samples:
            gt = int(torch.as_tensor(sample['gt_label']).view(-1)[0])
            pred = int(torch.as_tensor(sample['pred_label']).view(-1)[0])
            scoremap = frame_scoremap(self._map(sample, gt), self.frame)
            if sample.get('gt_mask_paths'):
                foreground, ignore = self._gt_masks(sample)
                self.results.append(dict(histograms=score_histograms(
                    scoremap, foreground, ignore, self.thresholds)))
                continue
            if sample.get('gt_bbox') is None:
                raise ValueError(
                    'WSOLMetric needs ground-truth boxes (metainfo '
                    "'gt_bbox') or masks ('gt_mask_paths') in every sample: "
                    'use a data set that provides them (WSOLMetadataDataset, '
                    "CUBWithBoxes) and add 'gt_bbox', 'gt_mask_paths' and "
                    "'gt_ignore_path' to the meta_keys of the test "
                    "pipeline's PackInputs.")
            boxes = self._gt_boxes(sample)
            v1 = best_box_ious(scoremap, boxes, self.thresholds)
            v2 = best_box_ious(scoremap, boxes, self.thresholds,
                               multi_contour=True)
            gt_known = best_box_ious(scoremap, boxes, fixed)[0]
            top1 = gt_known
            if pred != gt and self.map == 'class':
                top1 = best_box_ious(frame_scoremap(
                    self._map(sample, pred), self.frame), boxes, fixed)[0]
            self.results.append(dict(
                v1=v1 >= self.iou_thr,
                v2=np.stack([v2 >= t for t in self.iou_thrs]),
                gt_known=gt_known >= self.iou_thr,
                top1=(top1 >= self.iou_thr) and pred == gt,
                peak=peak_in_boxes(scoremap, boxes)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Accuracies in percent (PxAP for masks)."""
        with_masks = [r for r in results if 'histograms' in r]
        if with_masks:
            if len(with_masks) != len(results):
                raise ValueError('WSOLMetric got boxes for some images and '
                                 'masks for others; evaluate one kind per '
                                 'split.')
            positive = sum(r['histograms'][0] for r in results)
            negative = sum(r['histograms'][1] for r in results)
            return dict(pxap=pxap(positive, negative))
        metrics = {}
        acc, best = max_box_acc(np.stack([r['v1'] for r in results]))
        metrics['max_box_acc'] = acc
        metrics['max_box_acc_thr'] = float(self.thresholds[best])
        v2 = np.stack([r['v2'] for r in results])  # (N, IoUs, T)
        per_iou = [max_box_acc(v2[:, i])[0] for i in range(v2.shape[1])]
        metrics['max_box_acc_v2'] = float(np.mean(per_iou))
        for t, value in zip(self.iou_thrs, per_iou):
            metrics[f'max_box_acc_v2_{_iou_name(t)}'] = value
        for key in ('gt_known', 'top1'):
            metrics[f'{key}_loc'] = 100.0 * float(
                np.mean([r[key] for r in results]))
        metrics['peak_in_box'] = 100.0 * float(
            np.mean([r['peak'] for r in results]))
        return metrics
