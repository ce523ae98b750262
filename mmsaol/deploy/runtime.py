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


class UnreadableModelError(ValueError):
    """An ONNX file that ONNX Runtime cannot load or run."""


#: Largest side of the input an ONNX file's metadata may declare.
MAX_INPUT_SIDE = 16384
#: Most pixels an image file's header may claim (Pillow refuses more than
#: twice its ``MAX_IMAGE_PIXELS`` as a decompression bomb).
MAX_IMAGE_PIXELS = 2 ** 28


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip()]
    text = lines[0] if lines else ''
    return text if len(text) <= 200 else text[:200] + ' ...'


def check_image_file(path: str) -> None:
    """Refuse an image file before it is decoded: empty, or a header that
    claims more than :data:`MAX_IMAGE_PIXELS` pixels (a decoder would
    allocate them).

    Args:
        path (str): The image file.

    Raises:
        ValueError: Naming the file, the reason and the fix.
    """
    from PIL import Image
    if osp.isdir(path):
        raise ValueError(f'Cannot read image {path!r}: it is a folder.')
    if osp.getsize(path) == 0:
        raise ValueError(
            f'Cannot read image {path!r}: the file is empty (0 bytes); '
            'replace it (an incomplete copy or download?).')
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError:
        width, height = MAX_IMAGE_PIXELS, 2
    except Exception:  # not a format Pillow knows: OpenCV decides
        return
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f'Cannot read image {path!r}: its header claims more than the '
            f'{MAX_IMAGE_PIXELS} pixels decoded here (a damaged or crafted '
            'header, or a huge image); shrink or replace it.')


def allowed_transforms() -> Dict[str, type]:
    """The transform types a pipeline stored in a data file may name: those
    registered in mmpretrain's ``TRANSFORMS`` registry (mmpretrain's and
    mmsaol's) and in mmengine's root one (mmcv's), by plain name. A dotted
    name (which mmengine's registry would import) is never resolved."""
    from mmengine.registry import TRANSFORMS as ROOT
    from mmpretrain.registry import TRANSFORMS
    allowed = dict(ROOT.module_dict)
    allowed.update(TRANSFORMS.module_dict)
    return {name: cls for name, cls in allowed.items()
            if name.isidentifier() and isinstance(cls, type)}


def _is_plain(value: Any, depth: int = 0) -> bool:
    """JSON data without nested configs (dicts with a ``type``)."""
    if depth > 8:
        return False
    if isinstance(value, dict):
        return 'type' not in value and all(
            isinstance(k, str) and _is_plain(v, depth + 1)
            for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def check_pipeline(steps: Any, source: str, field: str) -> list:
    """A pipeline read from a data file, checked against
    :func:`allowed_transforms`.

    Args:
        steps: The pipeline (untrusted JSON data).
        source (str): The file, for messages.
        field (str): The field that holds it, for messages.

    Returns:
        list: ``steps``.

    Raises:
        ValueError: Not a list of dicts, a ``type`` that is not a plain
            registered transform name, or arguments that hold configs.
    """
    where = f'{source}: metadata field {field}'
    if not isinstance(steps, list):
        raise ValueError(f'{where} is a {type(steps).__name__}, not a list '
                         'of transforms; export the model again.')
    allowed = allowed_transforms()
    for step in steps:
        kind = step.get('type') if isinstance(step, dict) else None
        if not isinstance(kind, str) or kind not in allowed:
            raise ValueError(
                f'{where} names the transform {_short(kind)}, which is not '
                'a registered mmpretrain/mmcv/mmsaol transform (dotted '
                'names are never imported); export the model again.')
        if not _is_plain({k: v for k, v in step.items() if k != 'type'}):
            raise ValueError(
                f'{where}: the arguments of {kind} hold nested configs or '
                'non-JSON values, which are not built from a data file; '
                'export the model again.')
    return steps


def _short(value: Any) -> str:
    import reprlib
    return reprlib.repr(value)


def _number_list(value: Any, positive: bool = False) -> bool:
    return isinstance(value, list) and 0 < len(value) <= 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool)
        and np.isfinite(v) and (v > 0 or not positive) for v in value)


#: Each metadata field's check and what it must be.
_METADATA_CHECKS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    'mmsaol_version': (lambda v: isinstance(v, str), 'a string'),
    'outputs': (lambda v: isinstance(v, str) and v in OUTPUT_NAMES,
                f'one of {sorted(OUTPUT_NAMES)}'),
    'classes': (lambda v: v is None or isinstance(v, list) and all(
        isinstance(c, str) for c in v), 'null or a list of class names'),
    'input_size': (lambda v: isinstance(v, list) and len(v) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool)
        and 1 <= s <= MAX_INPUT_SIDE for s in v),
        f'[H, W], two ints in 1..{MAX_INPUT_SIDE}'),
    'normalize_in_graph': (lambda v: isinstance(v, bool), 'true or false'),
    'to_rgb': (lambda v: isinstance(v, bool), 'true or false'),
    'mean': (lambda v: v is None or _number_list(v),
             'null or a list of finite numbers'),
    'std': (lambda v: v is None or _number_list(v, positive=True),
            'null or a list of positive numbers'),
    'topk': (lambda v: isinstance(v, int) and not isinstance(v, bool)
             and v >= 1, 'an int >= 1'),
    'config': (lambda v: isinstance(v, str), 'a string'),
}


def read_metadata(stored: Dict[str, str], path: str) -> Dict[str, Any]:
    """The mmsaol metadata of an ONNX file, every field checked (it is data
    from a file: JSON values of the documented types, the test pipeline
    against :func:`allowed_transforms`).

    Args:
        stored (dict): The file's ``metadata_props``.
        path (str): The file, for messages.

    Returns:
        dict: Field name to value (:data:`METADATA_KEYS` present).

    Raises:
        ValueError: One sentence naming the file and the field.
    """
    missing = [k for k in ('outputs', 'input_size') if k not in stored]
    if missing:
        raise ValueError(
            f'{path} has no mmsaol metadata ({missing} missing): export '
            'it with mmsaol export-onnx.')
    meta: Dict[str, Any] = {}
    for key in (k for k in METADATA_KEYS if k in stored):
        try:
            value = json.loads(stored[key])
        except (ValueError, RecursionError):
            raise ValueError(
                f'{path}: metadata field {key} is not JSON; export the '
                'model again with mmsaol export-onnx.') from None
        if key == 'test_pipeline':
            if value is not None:
                check_pipeline(value, path, key)
        else:
            check, wanted = _METADATA_CHECKS[key]
            if not check(value):
                raise ValueError(
                    f'{path}: metadata field {key} is {_short(value)}, not '
                    f'{wanted}; export the model again with mmsaol '
                    'export-onnx.')
        meta[key] = value
    return meta


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
        if osp.getsize(path) == 0:
            raise UnreadableModelError(
                f'Cannot load ONNX model {path!r}: the file is empty (an '
                'interrupted export or copy?); export it again.')
        try:
            self.session = ort.InferenceSession(
                path, options, providers=['CPUExecutionProvider'])
        except Exception as error:  # onnxruntime's own exception types
            raise UnreadableModelError(
                f'Cannot load ONNX model {path!r}: ONNX Runtime refuses it '
                f'({type(error).__name__}: {_first_line(error)}); the file '
                'is truncated, damaged or not an mmsaol export (export it '
                'again with mmsaol export-onnx).') from None
        stored = self.session.get_modelmeta().custom_metadata_map
        self.meta: Dict[str, Any] = read_metadata(stored, path)
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
        try:
            outputs = self.session.run(None,
                                       {INPUT_NAME: self.normalize(inputs)})
        except Exception as error:  # onnxruntime's own exception types
            raise UnreadableModelError(
                f'ONNX model {self.path!r} failed to run '
                f'({type(error).__name__}: {_first_line(error)}); export it '
                'again with mmsaol export-onnx.') from None
        return dict(zip(self.output_names, outputs))

    # ---------------------------------------------------------------- images
    def pipeline(self) -> Callable[[dict], dict]:
        """The exported config's test pipeline (mmpretrain transforms) with
        image loading left out, or only ``PackInputs`` when none was
        stored."""
        if self._pipeline is None:
            from mmengine.registry import DefaultScope
            steps = self.meta.get('test_pipeline') or [
                dict(type='PackInputs')]
            transforms = []
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                for step in steps:  # checked by read_metadata
                    args = _tuples(step)
                    cls = allowed_transforms()[args.pop('type')]
                    try:
                        transforms.append(cls(**args))
                    except Exception as error:
                        raise ValueError(
                            f'{self.path}: metadata field test_pipeline '
                            f'has a {cls.__name__} that cannot be built '
                            f'({type(error).__name__}: '
                            f'{_first_line(error)}); export the model '
                            'again.') from None
            from mmcv.transforms import Compose
            self._pipeline = Compose(transforms)
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
        check_image_file(path)
        gray = self.session.get_inputs()[0].shape[1] == 1
        try:
            image = mmcv.imread(path, flag='grayscale' if gray else 'color')
        except Exception as error:  # cv2.error
            raise ValueError(
                f'Cannot read image {path!r}: it cannot be decoded '
                f'({type(error).__name__}: {_first_line(error)}); replace '
                'it.') from None
        if image is None:
            raise ValueError(f'Cannot read image {path!r}: it cannot be '
                             'decoded as an image; replace it.')
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
