"""Weakly-supervised object localisation metric."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from ..checks import check_choice
from ..structures import ATTENTION_MAP, CLASS_MAP_LABELS, CLASS_MAPS
from .wsol import localization_ious, peak_in_boxes, scale_boxes

MAP_KINDS = ('class', 'attention')
RESOLUTIONS = ('img_shape', 'ori_shape')


def _iou_name(iou: float) -> str:
    return f'iou{round(iou * 100):d}'


@METRICS.register_module()
class WSOLMetric(BaseMetric):
    """Localisation accuracy of class or attention maps (WSOL).

    The protocol of SAOL's localisation experiments (Kim, Baek, Kim, CVPR
    2020, `arXiv:2004.07570 <https://arxiv.org/abs/2004.07570>`_), from CAM
    (Zhou et al., CVPR 2016) and "Evaluating Weakly Supervised Object
    Localization Methods Right" (Choe et al., CVPR 2020): the map of a class
    is upsampled (bilinear) to the image, min-max normalised and
    thresholded; the box of the largest connected component is compared with
    the ground-truth boxes (best match). See :mod:`mmsaol.evaluation.wsol`.

    Reads from every sample: ``class_maps`` + ``class_map_labels`` (attached
    by ``SAOLHead`` or ``CAMHead`` with ``model.head.with_maps=True``) or
    ``attention_map`` (``SAOLHead``), ``gt_label``, ``pred_label`` and the
    metainfo ``gt_bbox`` (``(4,)`` or ``(M, 4)`` boxes ``x1, y1, x2, y2`` in
    ``ori_shape`` pixels), ``ori_shape`` and ``img_shape``. For the true
    class to have a map, set ``model.head.maps_topk`` to the number of
    classes.

    Reports, in percent (prefix ``wsol/``):

    - ``gt_known_loc``: box of the true class's map correct (IoU >=
      ``iou_thr``) at ``threshold``;
    - ``top1_loc``: box of the predicted class's map correct and the
      predicted class right, at ``threshold``;
    - ``max_box_acc`` (and ``max_box_acc_thr``, the threshold reaching it):
      best GT-known localisation over the threshold sweep, at ``iou_thr``;
    - ``max_box_acc_iouXX`` for each of ``iou_thrs`` and their mean
      ``max_box_acc_v2`` (MaxBoxAccV2);
    - ``peak_in_box``: the pointing game, the map's maximum (of the true
      class's map) inside the ground-truth box.

    Args:
        map (str): ``'class'`` (default): the class map of the true /
            predicted class (SAOL's ``A * Y_c``, or a CAM); ``'attention'``:
            SAOL's class-agnostic attention map ``A`` for both.
        threshold (float): Threshold on the normalised map for
            ``gt_known_loc``/``top1_loc``. Defaults to 0.2 (CAM's 20% of the
            maximum).
        threshold_step (float): Step of the threshold sweep ``0, step, ...,
            < 1`` for MaxBoxAcc. Defaults to 0.05.
        iou_thr (float): IoU for a correct box. Defaults to 0.5.
        iou_thrs (Sequence[float]): IoUs averaged by ``max_box_acc_v2``.
            Defaults to ``(0.3, 0.5, 0.7)``.
        resolution (str): Where maps are thresholded and compared with the
            boxes: ``'img_shape'`` (default; the network input, as in Choe
            et al.'s protocol: ``gt_bbox`` is scaled by ``img_shape /
            ori_shape``) or ``'ori_shape'`` (the image as loaded). Either
            way ``gt_bbox`` is in ``ori_shape`` pixels, and the test
            pipeline must only resize the image (no crop, no padding), so
            that both frames cover the same scene.
        collect_device (str): Device to gather results across ranks.
            Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix. Defaults to ``'wsol'``.
    """

    default_prefix = 'wsol'

    def __init__(self,
                 map: str = 'class',
                 threshold: float = 0.2,
                 threshold_step: float = 0.05,
                 iou_thr: float = 0.5,
                 iou_thrs: Sequence[float] = (0.3, 0.5, 0.7),
                 resolution: str = 'img_shape',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        check_choice(map, MAP_KINDS, 'WSOLMetric.map')
        check_choice(resolution, RESOLUTIONS, 'WSOLMetric.resolution')
        if not 0 <= threshold <= 1:
            raise ValueError('WSOLMetric.threshold is on the min-max '
                             f'normalised map and must be in [0, 1], got '
                             f'{threshold}.')
        if not 0 < threshold_step <= 1:
            raise ValueError('WSOLMetric.threshold_step must be in (0, 1], '
                             f'got {threshold_step}.')
        ious = (iou_thr, *iou_thrs)
        if not iou_thrs or not all(0 < t <= 1 for t in ious):
            raise ValueError('WSOLMetric.iou_thr and iou_thrs must be in '
                             f'(0, 1], got {iou_thr} and {tuple(iou_thrs)}.')
        self.map = map
        self.threshold = float(threshold)
        self.thresholds = np.round(np.arange(0.0, 1.0, threshold_step), 10)
        self.iou_thr = float(iou_thr)
        self.iou_thrs = tuple(float(t) for t in iou_thrs)
        self.resolution = resolution

    # ---------------------------------------------------------------- inputs
    def _gt_boxes(self, sample: dict) -> np.ndarray:
        """Ground-truth boxes in the frame of ``self.resolution``."""
        if sample.get('gt_bbox') is None:
            raise ValueError(
                'WSOLMetric needs ground-truth boxes in the metainfo key '
                "'gt_bbox' of every sample: use a data set that provides "
                "gt_bbox and add 'gt_bbox' to the meta_keys of the test "
                "pipeline's PackInputs.")
        boxes = torch.as_tensor(sample['gt_bbox']).detach().cpu().numpy()
        if boxes.size == 0 or boxes.size % 4:
            raise ValueError('gt_bbox must be (4,) or (M, 4) boxes (x1, y1, '
                             f'x2, y2), got shape {boxes.shape}.')
        boxes = boxes.reshape(-1, 4).astype(np.float64)
        if self.resolution == 'img_shape':
            boxes = scale_boxes(boxes, sample['ori_shape'],
                                sample['img_shape'])
        return boxes

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

    # -------------------------------------------------------------- process
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Score every sample of a batch; keep only the IoUs.

        Args:
            data_batch: The batch from the data loader (unused).
            data_samples (Sequence[dict]): Outputs of the model.
        """
        thresholds = np.append(self.thresholds, self.threshold)
        for sample in data_samples:
            boxes = self._gt_boxes(sample)
            size = sample[self.resolution]
            gt = int(torch.as_tensor(sample['gt_label']).view(-1)[0])
            pred = int(torch.as_tensor(sample['pred_label']).view(-1)[0])
            gt_map = self._map(sample, gt)
            ious = localization_ious(gt_map, size, boxes, thresholds)
            top1_iou = ious[-1]
            if self.map == 'class' and pred != gt:
                top1_iou = localization_ious(self._map(sample, pred), size,
                                             boxes, [self.threshold])[0]
            self.results.append(dict(sweep=ious[:-1], gt_known=ious[-1],
                                     top1=top1_iou, correct=pred == gt,
                                     peak=peak_in_boxes(gt_map, size,
                                                        boxes)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Accuracies in percent from the per-sample IoUs."""
        sweep = np.stack([r['sweep'] for r in results])
        gt_known = np.array([r['gt_known'] for r in results])
        top1 = np.array([r['top1'] for r in results])
        correct = np.array([r['correct'] for r in results])
        metrics = dict(
            gt_known_loc=100.0 * float(np.mean(gt_known >= self.iou_thr)),
            top1_loc=100.0 * float(np.mean((top1 >= self.iou_thr) &
                                           correct)))
        curve = 100.0 * np.mean(sweep >= self.iou_thr, axis=0)
        best = int(np.argmax(curve))
        metrics['max_box_acc'] = float(curve[best])
        metrics['max_box_acc_thr'] = float(self.thresholds[best])
        per_iou = [100.0 * float(np.mean(sweep >= t, axis=0).max())
                   for t in self.iou_thrs]
        for t, acc in zip(self.iou_thrs, per_iou):
            metrics[f'max_box_acc_{_iou_name(t)}'] = acc
        metrics['max_box_acc_v2'] = float(np.mean(per_iou))
        metrics['peak_in_box'] = 100.0 * float(
            np.mean([r['peak'] for r in results]))
        return metrics
