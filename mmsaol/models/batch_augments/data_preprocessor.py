"""ClsDataPreprocessor that hands CutMix geometry to the model."""
from __future__ import annotations

from typing import List, Optional

from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS

from ...structures import MixGeometry
from .cutmix import GeometryCutMix


def geometry_augments(preprocessor) -> List[GeometryCutMix]:
    """All :class:`GeometryCutMix` instances a data preprocessor may call."""
    batch_augments = getattr(preprocessor, 'batch_augments', None)
    if batch_augments is None:
        return []
    augments = getattr(batch_augments, 'augments', [batch_augments])
    return [a for a in augments if isinstance(a, GeometryCutMix)]


@MODELS.register_module()
class SAOLDataPreprocessor(ClsDataPreprocessor):
    """:class:`ClsDataPreprocessor` that hands CutMix geometry to the model.

    Takes exactly the arguments of mmpretrain's ``ClsDataPreprocessor`` and
    does the same normalisation and batch augmentation (so
    ``model.train_cfg = dict(augments=...)`` keeps its stock form). After a
    training batch mixed by :class:`GeometryCutMix`, its output also holds
    the batch's :class:`~mmsaol.structures.MixGeometry` (boxes, partners,
    the batch before pasting) under the key ``'mix'``, which mmengine's
    ``train_step`` (``BaseModel`` and ``MMDistributedDataParallel`` alike)
    passes to the model's ``forward`` as the keyword argument ``mix`` --
    when :attr:`hands_mix` is set, as :class:`SAOLClassifier` sets it (a
    stock ``ImageClassifier``'s ``forward`` takes no ``mix``).

    The per-cell mask is derived from the boxes on whatever feature grid the
    head has (:func:`box_to_cell_coverage`), so the preprocessor need not know
    the backbone's stride. A batch that was not mixed by
    :class:`GeometryCutMix` (Mixup or identity chosen by
    ``RandomBatchAugment``, or evaluation) carries no geometry, and the
    location losses treat it as "nothing pasted".
    """

    #: Whether :meth:`forward` returns the geometry under ``'mix'``.
    hands_mix: bool = False

    def _check_labels(self, data: dict) -> None:
        """A label beyond ``num_classes`` fails torch's one-hot with a
        message that names no config field; name them."""
        samples = data.get('data_samples') or []
        if not self.num_classes or not samples or \
                'gt_label' not in samples[0]:
            return
        top = max(int(s.gt_label.max()) for s in samples
                  if s.gt_label.numel())
        if top >= self.num_classes:
            raise ValueError(
                f'A ground-truth label is {top} but '
                f'data_preprocessor.num_classes={self.num_classes}; set '
                'data_preprocessor.num_classes and model.head.num_classes '
                'to the number of classes of the data set.')

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and self.batch_augments is not None:
            self._check_labels(data)
        for augment in geometry_augments(self):
            augment.pop_geometry()  # never reuse a stale box
        out = super().forward(data, training)
        geometry: Optional[MixGeometry] = None
        for augment in geometry_augments(self):
            geometry = augment.pop_geometry() or geometry
        if geometry is not None and training and self.hands_mix:
            out['mix'] = geometry
        return out
