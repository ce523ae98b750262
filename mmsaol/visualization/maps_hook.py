"""Hook that draws SAOL's maps during validation and test."""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample

from ..checks import check_choice, check_positive_int
from .maps import SCALES, display_image, render_maps


@HOOKS.register_module()
class SAOLMapsHook(Hook):
    """Draw the maps of the first images of every validation (and test) run
    through the runner's visualizer.

    SAOL (Kim, Baek, Kim, CVPR 2020) gives spatially interpretable outputs:
    this hook switches ``model.head.with_maps`` on for the first
    ``num_images`` images of each run (and back to its configured value
    after them), renders the image, the attention map and the class maps
    (:func:`render_maps`) and sends each picture to
    ``runner.visualizer.add_image``, so every configured backend
    (``LocalVisBackend``, ``TensorboardVisBackend``, ...) records it, under
    the name ``saol_maps_<image name>`` and the step ``epoch`` (epoch-based
    training) or ``iter`` (0 for a test run). Works for any head with a
    ``with_maps`` switch (``SAOLHead``, ``CAMHead``).

    Args:
        num_images (int): Images drawn per run. Defaults to 4.
        topk (int, optional): Class maps per picture, at most the head's
            ``maps_topk``. Defaults to 2 (a WSOL config attaching one map per
            class still draws two); None draws all attached.
        box_thr (float, optional): Also draw each map's estimated box at this
            threshold. Defaults to None.
        scale (str): Colour scales of the maps, each with a colour bar:
            ``'shared'`` (default: the class maps of a picture share one,
            SAOL's attention keeps its own) or ``'per-map'`` (each map
            min-max normalised). See :mod:`mmsaol.visualization.maps`.
        draw_test (bool): Also draw during ``runner.test()``. Defaults to
            True.
    """

    def __init__(self,
                 num_images: int = 4,
                 topk: Optional[int] = 2,
                 box_thr: Optional[float] = None,
                 scale: str = 'shared',
                 draw_test: bool = True) -> None:
        check_positive_int(num_images, 'SAOLMapsHook.num_images')
        check_choice(scale, SCALES, 'SAOLMapsHook.scale')
        self.scale = scale
        self.num_images = num_images
        self.topk = topk
        self.box_thr = box_thr
        self.draw_test = draw_test
        self._drawn = 0
        self._saved: Optional[bool] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _start(self, runner) -> None:
        head = getattr(self._model(runner), 'head', None)
        self._drawn = 0
        if head is None or not hasattr(head, 'with_maps'):
            runner.logger.warning(
                'SAOLMapsHook: model.head has no `with_maps` switch (use '
                'SAOLHead, or CAMHead for GAP-FC); no maps are drawn.')
            self._drawn = self.num_images
            return
        self._saved = head.with_maps
        head.with_maps = True

    def _restore(self, runner) -> None:
        if self._saved is not None:
            self._model(runner).head.with_maps = self._saved
            self._saved = None

    def _draw(self, runner, data_batch: dict,
              outputs: Sequence[DataSample], step: int) -> None:
        if self._drawn >= self.num_images:
            return
        model = self._model(runner)
        bgr = bool(getattr(model.data_preprocessor, 'to_rgb', False))
        # The val/test loop hands the data set's metainfo to the visualizer.
        meta = getattr(runner.visualizer, 'dataset_meta', None) or {}
        classes = meta.get('classes')
        for image, sample in zip(data_batch['inputs'], outputs):
            if self._drawn >= self.num_images:
                break
            if sample.get('img_path'):
                name = osp.splitext(osp.basename(sample.img_path))[0]
            else:
                name = str(sample.get('sample_idx', self._drawn))
            picture = render_maps(display_image(image, bgr), sample, classes,
                                  topk=self.topk, title=name,
                                  box_thr=self.box_thr, scale=self.scale)
            runner.visualizer.add_image(f'saol_maps_{name}', picture,
                                        step=step)
            self._drawn += 1
        if self._drawn >= self.num_images:
            # The remaining batches need no maps (unless configured).
            self._restore(runner)

    def before_val_epoch(self, runner) -> None:
        self._start(runner)

    def after_val_iter(self, runner, batch_idx: int, data_batch: dict,
                       outputs: Sequence[DataSample]) -> None:
        step = runner.epoch if isinstance(runner.train_loop,
                                          EpochBasedTrainLoop) else runner.iter
        self._draw(runner, data_batch, outputs, step)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._restore(runner)

    def before_test_epoch(self, runner) -> None:
        if self.draw_test:
            self._start(runner)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DataSample]) -> None:
        if self.draw_test:
            self._draw(runner, data_batch, outputs, step=0)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._restore(runner)
