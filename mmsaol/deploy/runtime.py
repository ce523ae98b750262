"""Run an exported model with ONNX Runtime on the CPU.

:class:`OnnxClassifier` opens a file written by :func:`export_onnx`, reads
its metadata (classes, input size, normalisation, test pipeline) and turns
its outputs into mmpretrain ``DataSample`` predictions with the fields
``predict(..., with_maps=True)`` attaches, so mmsaol's drawing functions
render them unchanged.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from ..structures import ATTENTION_MAP, CLASS_MAP_LABELS, CLASS_MAPS
from .export import METADATA_KEYS, require_deploy
from .graph import INPUT_NAME, OUTPUT_NAMES

#: Output names and the ``DataSample`` field each becomes.
SAMPLE_FIELDS = (('attention', ATTENTION_MAP),
                 ('class_maps', CLASS_MAPS),
                 ('class_map_labels', CLASS_MAP_LABELS))


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (mmcv transforms want tuple sizes)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


class OnnxClassifier:
    """An exported SAOL (or GAP-FC) model in an ONNX Runtime CPU session.

    Args:
        path (str): The ``.onnx`` file (from :func:`export_onnx`).
        threads (int, optional): ONNX Runtime's intra-op threads. Defaults
            to ONNX Runtime's choice.
    """

    def __init__(self, path: str, threads: Optional[int] = None) -> None:
        ort = require_deploy('onnxruntime')
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX model {path!r} not found.')
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
        stored = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ('outputs', 'input_size') if k not in stored]
        if missing:
            raise ValueError(
                f'{path} has no mmsaol metadata ({missing} missing): export '
                'it with mmsaol export-onnx.')
        self.meta: Dict[str, Any] = {
            k: json.loads(stored[k]) for k in METADATA_KEYS if k in stored}
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        if self.output_names != OUTPUT_NAMES.get(self.meta['outputs']):
            raise ValueError(
                f'{path} has outputs {self.output_names}, not those of an '
                f"mmsaol '{self.meta['outputs']}' export.")
        self._pipeline: Optional[Callable] = None

    @property
    def classes(self) -> Optional[List[str]]:
        return self.meta.get('classes')

    @property
    def input_size(self) -> Tuple[int, int]:
        return tuple(self.meta['input_size'])

    @property
    def has_maps(self) -> bool:
        return 'class_maps' in self.output_names

    def class_name(self, label: int) -> str:
        classes = self.classes
        return str(classes[label]) if classes and 0 <= label < len(
            classes) else str(label)

    def normalize(self, inputs: np.ndarray) -> np.ndarray:
        """What the data preprocessor does, for a graph exported without
        it (``--no-normalize``): BGR to RGB when ``to_rgb``, then
        ``(x - mean) / std``. Float32 pixels otherwise."""
        inputs = np.asarray(inputs, dtype=np.float32)
        if self.meta.get('normalize_in_graph', True):
            return inputs
        if self.meta.get('to_rgb') and inputs.shape[1] == 3:
            inputs = inputs[:, ::-1]
        if self.meta.get('mean') is not None:
            mean = np.asarray(self.meta['mean'], np.float32)[:, None, None]
            std = np.asarray(self.meta['std'], np.float32)[:, None, None]
            inputs = (inputs - mean) / std
        return np.ascontiguousarray(inputs, dtype=np.float32)

    def __call__(self, inputs: np.ndarray) -> Dict[str, np.ndarray]:
        """Run a batch: ``(N, C, H, W)`` pixels as the test pipeline gives
        them (any batch size, the exported ``H, W``)."""
        outputs = self.session.run(None,
                                   {INPUT_NAME: self.normalize(inputs)})
        return dict(zip(self.output_names, outputs))

    # ---------------------------------------------------------------- images
    def pipeline(self) -> Callable[[dict], dict]:
        """The exported config's test pipeline (mmpretrain transforms) with
        image loading left out, or only ``PackInputs`` when none was
        stored."""
        if self._pipeline is None:
            from mmcv.transforms import Compose
            from mmengine.registry import DefaultScope
            from mmpretrain.registry import TRANSFORMS
            steps = self.meta.get('test_pipeline') or [
                dict(type='PackInputs')]
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                self._pipeline = Compose(
                    [TRANSFORMS.build(_tuples(t)) for t in steps])
        return self._pipeline

    def load_image(self, path: str) -> Tuple[torch.Tensor, DataSample]:
        """An image file as the exported config's test pipeline gives it
        (read like mmpretrain's inferencer, in BGR; in grayscale for a
        one-channel model), resized to the exported input size when the
        pipeline ends at another size.

        Returns:
            tuple: ``(C, H, W)`` uint8 input and its ``DataSample``
            (``img_shape``, ``ori_shape``, ...).
        """
        import mmcv
        gray = self.session.get_inputs()[0].shape[1] == 1
        image = mmcv.imread(path, flag='grayscale' if gray else 'color')
        if image is None:
            raise ValueError(f'failed to load image: {path}')
        packed = self.pipeline()(dict(img=image, img_shape=image.shape[:2],
                                      ori_shape=image.shape[:2]))
        inputs, sample = packed['inputs'], packed['data_samples']
        if tuple(inputs.shape[-2:]) != self.input_size:
            inputs = F.interpolate(
                inputs[None].float(), size=self.input_size, mode='bilinear',
                align_corners=False, antialias=True)[0].round().clamp(
                    0, 255).to(torch.uint8)
            sample.set_metainfo(dict(img_shape=self.input_size))
        return inputs, sample

    def predict(self, inputs: torch.Tensor,
                samples: Optional[Sequence[DataSample]] = None
                ) -> List[DataSample]:
        """Run a batch and return predictions as ``DataSample`` with
        ``pred_score``, ``pred_label`` and, when exported, the maps
        (``attention_map``, ``class_maps``, ``class_map_labels``).

        Args:
            inputs (Tensor | np.ndarray): ``(N, C, H, W)`` pixels.
            samples (Sequence[DataSample], optional): Samples to fill
                (e.g. from :meth:`load_image`); new ones otherwise.
        """
        outputs = self(np.asarray(inputs))
        count = outputs['probs'].shape[0]
        samples = list(samples) if samples is not None else [
            DataSample() for _ in range(count)]
        for i, sample in enumerate(samples):
            probs = torch.from_numpy(outputs['probs'][i])
            sample.set_pred_score(probs).set_pred_label(probs.argmax())
            for name, field in SAMPLE_FIELDS:
                if name in outputs:
                    sample.set_field(torch.from_numpy(outputs[name][i]),
                                     field)
        return samples
