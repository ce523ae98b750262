"""ClsDataPreprocessor that carries CutMix geometry to the head."""
from __future__ import annotations

from typing import List, Optional

from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS

from .cutmix import GeometryCutMix, MixGeometry

#: DataSample fields written for every image of a CutMix batch.
MIX_BOX = 'mix_box'
MIX_PARTNER = 'mix_partner'
MIX_PARTNER_LABEL = 'mix_partner_label'
MIX_IMAGE_SIZE = 'mix_image_size'
UNMIXED_INPUT = 'unmixed_input'


def geometry_augments(preprocessor) -> List[GeometryCutMix]:
    """All :class:`GeometryCutMix` instances a data preprocessor may call."""
    batch_augments = getattr(preprocessor, 'batch_augments', None)
    if batch_augments is None:
        return []
    augments = getattr(batch_augments, 'augments', [batch_augments])
    return [a for a in augments if isinstance(a, GeometryCutMix)]


@MODELS.register_module()
class SAOLDataPreprocessor(ClsDataPreprocessor):
    """:class:`ClsDataPreprocessor` that attaches CutMix geometry to samples.

    Takes exactly the arguments of mmpretrain's ``ClsDataPreprocessor`` and
    does the same normalisation and batch augmentation (so
    ``model.train_cfg = dict(augments=...)`` keeps its stock form). After a
    training batch mixed by :class:`GeometryCutMix`, every
    :class:`DataSample` also carries:

    - ``mix_box``: ``(4,)`` pasted box ``(x1, y1, x2, y2)`` in input pixels;
    - ``mix_partner``: index (in this batch) of the pasted image;
    - ``mix_partner_label``: the partner's ``gt_label``;
    - ``mix_image_size`` (metainfo): ``(H, W)`` of the mixed batch;
    - ``unmixed_input``: the image before pasting, when kept.

    The per-cell mask is derived from the box on whatever feature grid the
    head has (:func:`box_to_cell_coverage`), so the preprocessor need not know
    the backbone's stride. A batch that was not mixed by
    :class:`GeometryCutMix` (Mixup or identity chosen by
    ``RandomBatchAugment``, or evaluation) carries none of these fields, and
    the location losses treat it as "nothing pasted".
    """

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
        samples = out.get('data_samples')
        if geometry is None or not training or not samples:
            return out
        labels = [s.gt_label for s in samples]
        for i, sample in enumerate(samples):
            j = int(geometry.partner[i])
            sample.set_field(geometry.boxes[i], MIX_BOX)
            sample.set_field(geometry.partner[i], MIX_PARTNER)
            sample.set_field(labels[j], MIX_PARTNER_LABEL)
            sample.set_metainfo({MIX_IMAGE_SIZE: geometry.image_size})
            if geometry.unmixed is not None:
                sample.set_field(geometry.unmixed[i], UNMIXED_INPUT)
        return out
