"""A CutMix that tells the model where it pasted."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
from mmpretrain.models.utils.batch_augments import CutMix
from mmpretrain.registry import BATCH_AUGMENTS
from torch import Tensor

from ...structures import MixGeometry
from ..options import check_options


@BATCH_AUGMENTS.register_module()
class GeometryCutMix(CutMix):
    """CutMix (Yun et al., ICCV 2019) that records its geometry for SAOL.

    A drop-in for mmpretrain's :class:`CutMix` (same arguments, same mixing,
    same random draws for the default one-box-per-batch mode) that also
    remembers, for the next :class:`SAOLDataPreprocessor` to read, the pasted
    boxes, the partner permutation and the batch before pasting, of the
    last batch it mixed (:class:`MixGeometry`).
    SAOL's location-specific self-supervision needs them: the pasted region
    of a mixed image should be explained by the partner image.

    Args:
        alpha (float): Beta(alpha, alpha) parameter of the mixing ratio.
        cutmix_minmax (List[float], optional): min/max box side ratio; when
            set, ``alpha`` is ignored. Defaults to None.
        correct_lam (bool): Recompute lambda from the clipped box area.
            Defaults to True.
        per_sample_box (bool): Draw an independent lambda and box for every
            image instead of one for the whole batch (the original CutMix).
            More diverse geometry per batch at the cost of a Python loop over
            the batch. Defaults to False.
    """

    #: Arguments :class:`GeometryCutMix` adds to mmpretrain's ``CutMix``;
    #: a config going back to the stock ``CutMix`` drops them.
    EXTRA_ARGS: Tuple[str, ...] = ('per_sample_box', )

    @check_options
    def __init__(self,
                 alpha: float,
                 cutmix_minmax: Optional[List[float]] = None,
                 correct_lam: bool = True,
                 per_sample_box: bool = False) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) \
                or alpha <= 0:
            raise ValueError(
                f'GeometryCutMix: alpha must be a positive float, got '
                f'{alpha!r}; e.g. augments=dict(type="GeometryCutMix", '
                f'alpha=1.0).')
        super().__init__(alpha=float(alpha), cutmix_minmax=cutmix_minmax,
                         correct_lam=correct_lam)
        self.per_sample_box = per_sample_box
        self.last_geometry: Optional[MixGeometry] = None

    def pop_geometry(self) -> Optional[MixGeometry]:
        """Return the geometry of the last mixed batch and forget it, so a
        later batch that this augment did not mix never sees stale boxes."""
        geometry, self.last_geometry = self.last_geometry, None
        return geometry

    def _draw_per_sample(self, img_shape: Tuple[int, int], count: int
                         ) -> Tuple[np.ndarray, np.ndarray]:
        """Draw an independent lambda and box ``(x1, y1, x2, y2)`` per
        image, each with mmpretrain's own box sampler."""
        boxes, lams = [], []
        for _ in range(count):
            lam = np.random.beta(self.alpha, self.alpha)
            (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(img_shape, lam)
            boxes.append((x1, y1, x2, y2))
            lams.append(lam)
        return (np.asarray(boxes, dtype=np.float32).reshape(count, 4),
                np.asarray(lams, dtype=np.float32))

    def mix(self, batch_inputs: Tensor,
            batch_scores: Tensor) -> Tuple[Tensor, Tensor]:
        """Mix inputs and one-hot scores in place and record the geometry.

        Args:
            batch_inputs (Tensor): ``(N, C, H, W)`` images.
            batch_scores (Tensor): ``(N, num_classes)`` one-hot labels.

        Returns:
            Tuple[Tensor, Tensor]: mixed inputs and label-mixed scores.
        """
        batch_size = batch_inputs.size(0)
        img_shape = tuple(batch_inputs.shape[-2:])
        if not self.per_sample_box:
            # Same draw order as mmpretrain's CutMix.mix: lam, index, box.
            lam = np.random.beta(self.alpha, self.alpha)
            index = torch.randperm(batch_size)
            (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(img_shape, lam)
            boxes = np.tile(np.float32([x1, y1, x2, y2]), (batch_size, 1))
            lams = np.full(batch_size, lam, dtype=np.float32)
        else:
            index = torch.randperm(batch_size)
            boxes, lams = self._draw_per_sample(img_shape, batch_size)

        # The batch before pasting: the source of the pasted regions, and
        # the input of SAOL's self-annotated targets.
        unmixed = batch_inputs.clone()
        index_dev = index.to(batch_inputs.device)
        if not self.per_sample_box:
            x1, y1, x2, y2 = (int(v) for v in boxes[0])
            batch_inputs[:, :, y1:y2, x1:x2] = \
                unmixed[index_dev, :, y1:y2, x1:x2]
        else:
            for i, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64)):
                batch_inputs[i, :, y1:y2, x1:x2] = \
                    unmixed[index[i], :, y1:y2, x1:x2]

        lam_t = torch.from_numpy(lams).to(batch_scores.device)
        mixed_scores = lam_t[:, None] * batch_scores + \
            (1 - lam_t[:, None]) * batch_scores[index_dev]
        self.last_geometry = MixGeometry(
            boxes=torch.from_numpy(boxes).to(batch_inputs.device),
            partner=index_dev,
            image_size=(int(img_shape[0]), int(img_shape[1])),
            unmixed=unmixed)
        return batch_inputs, mixed_scores
