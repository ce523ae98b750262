"""Export a SAOL (or GAP-FC) classifier with its maps to ONNX.

PyTorch's exporter (``torch.onnx.export(..., dynamo=True)``: ``torch.export``
then onnxscript's translation) writes the :class:`InferenceGraph` of a
config + checkpoint as one self-contained ``.onnx`` file with a dynamic batch
dimension, checks it with ``onnx.checker`` and stores what a runtime needs
to feed and read it as ONNX ``metadata_props`` (:data:`METADATA_KEYS`).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.apis import get_model
from torch import nn

from ..checks import MissingDeployDependency
from ..compat.config import build_split, load_config
from ..model_configs import maps_config
from ..version import __version__
from .graph import INPUT_NAME, InferenceGraph

#: The optional packages of ``pip install mmsaol[deploy]``.
DEPLOY_PACKAGES = ('onnx', 'onnxruntime', 'onnxscript')
#: Batch size of the example input the graph is traced with. The batch
#: dimension is exported as dynamic; an example of 1 would let the tracer
#: specialise on it, hence 2.
EXPORT_BATCH = 2
#: Largest difference between ONNX Runtime's and PyTorch's float32
#: probabilities and maps that the export check accepts (their kernels
#: round differently; a wrongly traced graph differs by far more).
VERIFY_TOLERANCE = 1e-4
#: Transforms the runtime does itself before the stored test pipeline.
LOADING_TRANSFORMS = ('LoadImageFromFile', )
#: ONNX ``metadata_props`` written at export (all values are JSON):
METADATA_KEYS = (
    'mmsaol_version',  # the exporting mmsaol
    'outputs',  # 'saol', 'gapfc' or 'cam' (see graph.OUTPUT_NAMES)
    'classes',  # class names, or null
    'input_size',  # [H, W] of the graph input
    'normalize_in_graph',  # false: the caller applies to_rgb/mean/std
    'to_rgb',  # the data preprocessor flips BGR inputs to RGB
    'mean',  # per-channel mean of the data preprocessor, or null
    'std',  # per-channel std, or null
    'topk',  # class maps per image
    'test_pipeline',  # the config's test pipeline without image loading
    'config',  # file name of the exported config
)


def require_deploy(name: str):
    """Import an optional deploy package, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise MissingDeployDependency(
            f'{name} is not installed: ONNX export and inference need the '
            'deploy extra, pip install "mmsaol[deploy]" (onnx, onnxruntime, '
            'onnxscript).') from error


@dataclass
class ExportedModel:
    """What :func:`export_onnx` wrote.

    Attributes:
        path (str): the ``.onnx`` file.
        outputs (str): the output kind (``'saol'``, ``'gapfc'``, ``'cam'``).
        output_names (List[str]): the graph's outputs, in order.
        input_size (Tuple[int, int]): ``(H, W)`` of the input.
        input_channels (int): ``C`` of the input.
        opset (int): the ONNX opset of the default domain.
        metadata (Dict[str, str]): the ``metadata_props`` written.
    """

    path: str
    outputs: str
    output_names: List[str]
    input_size: Tuple[int, int]
    input_channels: int
    opset: int
    metadata: Dict[str, str]


def load_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """A classifier in eval mode, ready for :class:`InferenceGraph`.

    A GAP-FC model (``LinearClsHead`` after ``GlobalAveragePooling``) is
    built with :class:`CAMHead` and no neck (same weights; see
    :func:`mmsaol.model_configs.maps_config`). The checkpoint is loaded with
    mmengine's ``load_checkpoint`` (through mmsaol's safe loader) and must
    fit the model exactly. ``model._dataset_meta`` holds the class names:
    the checkpoint's, else the test data set's.

    Args:
        config (str | Config): Model config.
        checkpoint (str, optional): Weights; None keeps the random
            initialisation.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: the classifier, with ``_config`` and ``_dataset_meta``.
    """
    cfg = maps_config(load_config(config, cfg_options))
    model = get_model(cfg, device='cpu')
    if checkpoint is not None:
        loaded = load_weights(model, checkpoint)
        meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
        classes = meta.get('dataset_meta') if isinstance(meta, dict) \
            else None
        if classes:
            model._dataset_meta = checked_dataset_meta(classes, checkpoint)
    return model.eval()


def load_weights(model: nn.Module, checkpoint: str) -> dict:
    """Load a checkpoint into ``model`` strictly, through mmsaol's safe
    loader (values checked: finite, dense, floating-point where the model
    is).

    Args:
        model (nn.Module): The model.
        checkpoint (str): The file (or URL).

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The checkpoint does not fit the model or holds unusable
            values (one sentence naming the file).
    """
    if not osp.exists(checkpoint) and '://' not in checkpoint:
        raise FileNotFoundError(f'Checkpoint {checkpoint!r} not found.')
    try:
        return load_checkpoint(model, checkpoint, map_location='cpu',
                               strict=True, logger='silent')
    except RuntimeError as error:
        if 'do not match exactly' not in str(error) and \
                'No state_dict found' not in str(error):
            raise
        detail = ' '.join(str(error).split())
        detail = detail if len(detail) < 400 else detail[:400] + ' ...'
        raise ValueError(
            f'The checkpoint {checkpoint} does not fit the config '
            f'({detail}); use it with the config it was trained with.'
        ) from None


def checked_dataset_meta(meta: Any, source: str) -> dict:
    """A checkpoint's ``meta['dataset_meta']``, checked: a dict whose
    ``classes`` (if any) is a list of strings.

    Raises:
        ValueError: Naming the file and the field.
    """
    classes = meta.get('classes') if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or classes is not None and not (
            isinstance(classes, (list, tuple))
            and all(isinstance(c, str) for c in classes)):
        raise ValueError(
            f"The checkpoint {source}: meta['dataset_meta'] must be a dict "
            "whose 'classes' is a list of class names; re-save it with "
            'plain class names or drop that field.')
    return meta


def _size_of(value: Any) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of an mmcv size argument (an int, or ``(w, h)``)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[1]), int(value[0])
    return None


def _test_pipeline(cfg: Config) -> Optional[list]:
    """The transforms of the config's test data set, None when unset."""
    return cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')


def default_input_size(cfg: Config) -> Tuple[int, int]:
    """The image size the config's test pipeline gives the network: the
    last ``crop_size`` (CenterCrop and its kin) or fixed ``Resize`` scale,
    else the size of the test data set's first image."""
    pipeline = _test_pipeline(cfg) or []
    size = None
    for transform in pipeline:
        if 'crop_size' in transform:
            size = _size_of(transform['crop_size'])
        elif transform.get('type') == 'Resize' and 'scale' in transform:
            size = _size_of(transform['scale'])
    if size is not None:
        return size
    try:
        first = build_split(cfg, 'test', 1)[0]
    except Exception as error:
        raise ValueError(
            'Cannot tell the input size from the config: its test pipeline '
            f'has no crop or fixed resize, and its test data set did not '
            f'load ({type(error).__name__}: {error}). Give --input-size H W.'
        ) from None
    return tuple(int(s) for s in first['inputs'].shape[-2:])


def _plain(value: Any) -> Any:
    """A config value as plain JSON types (ConfigDicts to dicts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def runtime_pipeline(cfg: Config) -> Optional[list]:
    """The config's test pipeline without image loading, JSON-ready; None
    when it is not plain data (then the runtime only resizes)."""
    pipeline = _test_pipeline(cfg)
    if pipeline is None:
        return None
    kept = [_plain(t) for t in pipeline
            if t.get('type') not in LOADING_TRANSFORMS]
    try:
        json.dumps(kept)
    except TypeError:
        return None
    return kept


def _preprocessor_metadata(model: nn.Module) -> Dict[str, Any]:
    preprocessor = model.data_preprocessor
    normalize = bool(getattr(preprocessor, '_enable_normalize', False))

    def values(buffer: torch.Tensor) -> Optional[List[float]]:
        # float32 buffers: 7 significant digits give back the config's
        # numbers (123.675, not 123.67500305175781).
        return [float(f'{v:.7g}') for v in buffer.flatten().tolist()] \
            if normalize else None

    return dict(to_rgb=bool(getattr(preprocessor, 'to_rgb', False)),
                mean=values(getattr(preprocessor, 'mean', None)),
                std=values(getattr(preprocessor, 'std', None)))


def graph_metadata(graph: InferenceGraph, input_size: Sequence[int],
                   config_name: str = '') -> Dict[str, str]:
    """The ``metadata_props`` of :data:`METADATA_KEYS` for a graph."""
    model = graph.model
    classes = (getattr(model, '_dataset_meta', None) or {}).get('classes')
    cfg = getattr(model, '_config', None) or Config()
    values = dict(
        mmsaol_version=__version__, outputs=graph.kind,
        classes=list(classes) if classes is not None else None,
        input_size=[int(s) for s in input_size],
        normalize_in_graph=graph.normalize,
        **_preprocessor_metadata(model), topk=graph.topk,
        test_pipeline=runtime_pipeline(cfg), config=config_name)
    return {key: json.dumps(values[key]) for key in METADATA_KEYS}


def input_channels(model: nn.Module) -> int:
    """Channels of the image the classifier takes (3 unless the backbone
    says otherwise)."""
    cfg = getattr(model, '_config', None)
    backbone = cfg.model.backbone if cfg is not None else {}
    return int(backbone.get('in_channels', 3))


def _window_reverse(windows: torch.Tensor, H: int, W: int,
                    window_size: int) -> torch.Tensor:
    """``ShiftWindowMSA.window_reverse`` of mmpretrain 1.2.0 with the batch
    size in integer arithmetic (see :func:`exportable_upstream`)."""
    batch = windows.shape[0] // ((H // window_size) * (W // window_size))
    x = windows.view(batch, H // window_size, W // window_size, window_size,
                     window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(batch, H, W, -1)


@contextlib.contextmanager
def exportable_upstream() -> Iterator[None]:
    """Upstream code that traces to a wrong graph, replaced while exporting.

    mmpretrain 1.2.0 (Swin, Swin-V2: ``ShiftWindowMSA.window_reverse``)
    computes the batch size as ``int(windows.shape[0] / (H * W / ws / ws))``.
    ``torch.export`` (torch 2.14) turns that float division into the
    example's batch size, and the following ``view(B, ..., -1)`` then
    silently folds any other batch into the channels: the exported Swin
    gives wrong outputs for every batch size but the example's. The
    replacement is the same computation in integers. Remove it once
    mmpretrain divides with ``//`` there.
    """
    from mmpretrain.models.utils.attention import ShiftWindowMSA
    original = ShiftWindowMSA.__dict__['window_reverse']
    ShiftWindowMSA.window_reverse = staticmethod(_window_reverse)
    try:
        yield
    finally:
        ShiftWindowMSA.window_reverse = original


class ExportMismatchError(ValueError):
    """The exported graph does not compute what the PyTorch model does."""


def check_against_torch(graph: InferenceGraph, path: str,
                        input_size: Sequence[int],
                        batch_size: int = EXPORT_BATCH + 1,
                        tol: float = VERIFY_TOLERANCE) -> Dict[str, float]:
    """Run the exported file in ONNX Runtime and ``graph`` in PyTorch on the
    same random batch (of another size than the exported example) and
    compare their outputs.

    Returns:
        dict[str, float]: the largest absolute difference of every float
        output (class maps: of the classes both runtimes ranked alike).

    Raises:
        ExportMismatchError: a difference above ``tol``.
    """
    ort = require_deploy('onnxruntime')
    inputs = torch.rand(batch_size, input_channels(graph.model),
                        *input_size,
                        generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        expected = dict(zip(graph.output_names,
                            (t.numpy() for t in graph(inputs))))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = dict(zip(graph.output_names,
                   session.run(None, {INPUT_NAME: inputs.numpy()})))
    diffs = {}
    for name in ('probs', 'attention', 'class_maps'):
        if name not in expected:
            continue
        want, have = expected[name], got[name]
        if want.shape != have.shape:
            diffs[name] = float('inf')
            continue
        if name == 'class_maps':
            same = expected['class_map_labels'] == got['class_map_labels']
            want, have = want[same], have[same]
        diffs[name] = float(np.abs(want - have).max(initial=0.0))
    wrong = {k: v for k, v in diffs.items() if not v <= tol}
    if wrong:
        raise ExportMismatchError(
            f'The exported graph does not reproduce PyTorch at batch size '
            f'{batch_size} (largest differences {wrong}, allowed {tol}): '
            'code of the model fixed the example\'s batch size or a shape '
            'while tracing (see mmsaol.deploy.export.exportable_upstream '
            'for the known cases); please report the config.')
    return diffs


def export_graph(graph: InferenceGraph, out: str,
                 input_size: Sequence[int],
                 opset: Optional[int] = None,
                 metadata: Optional[Dict[str, str]] = None,
                 verify: bool = True) -> int:
    """Write ``graph`` to ``out`` with a dynamic batch dimension, add the
    metadata, check the file with ``onnx.checker`` and, with ``verify``,
    its outputs against PyTorch's at another batch size
    (:func:`check_against_torch`).

    Returns:
        int: the opset of the default ONNX domain in the file.
    """
    onnx = require_deploy('onnx')
    require_deploy('onnxscript')  # torch.onnx's dynamo exporter needs it
    graph.eval()
    example = torch.rand(EXPORT_BATCH, input_channels(graph.model),
                         *input_size) * 255
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    batch = torch.export.Dim('batch')
    with torch.no_grad(), exportable_upstream():
        torch.onnx.export(
            graph, (example, ), out, input_names=[INPUT_NAME],
            output_names=list(graph.output_names),
            dynamic_shapes=({0: batch}, ), opset_version=opset,
            dynamo=True, external_data=False, verbose=False)
    proto = onnx.load(out)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, out)
    onnx.checker.check_model(out, full_check=True)
    if verify:
        try:
            check_against_torch(graph, out, input_size)
        except ExportMismatchError:
            os.remove(out)  # a file that computes something else
            raise
    return next(o.version for o in proto.opset_import if o.domain == '')


def export_onnx(config: Union[str, Config],
                checkpoint: Optional[str],
                out: str,
                head: Optional[str] = None,
                topk: int = 2,
                normalize: bool = True,
                input_size: Optional[Sequence[int]] = None,
                opset: Optional[int] = None,
                cfg_options: Optional[dict] = None) -> ExportedModel:
    """Export a SAOL or GAP-FC classifier with its maps to ONNX.

    Args:
        config (str | Config): Model config.
        checkpoint (str, optional): Weights (None: random initialisation).
        out (str): The ``.onnx`` file to write.
        head (str, optional): ``'saol'``, ``'gapfc'`` (probabilities only)
            or None (the model's own maps: SAOL's, or a GAP-FC model's
            CAM). See :class:`InferenceGraph`.
        topk (int): Class maps per image. Defaults to 2.
        normalize (bool): Put the data preprocessor's normalisation in the
            graph. Defaults to True.
        input_size (Sequence[int], optional): ``(H, W)`` of the input.
            Defaults to the size the test pipeline gives
            (:func:`default_input_size`).
        opset (int, optional): ONNX opset. Defaults to the exporter's.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        ExportedModel: the file and what it holds.
    """
    model = load_model(config, checkpoint, cfg_options)
    if input_size is None:
        input_size = default_input_size(model._config)
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f'input_size must be two positive ints (H W), got '
                         f'{input_size}.')
    graph = InferenceGraph(model, head=head, topk=topk, normalize=normalize)
    name = osp.basename(config) if isinstance(config, str) else ''
    metadata = graph_metadata(graph, input_size, name)
    opset_used = export_graph(graph, out, input_size, opset,
                              metadata)
    return ExportedModel(path=out, outputs=graph.kind,
                         output_names=list(graph.output_names),
                         input_size=input_size,
                         input_channels=input_channels(model),
                         opset=opset_used,
                         metadata=metadata)
