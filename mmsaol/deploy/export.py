"""Export a SAOL (or GAP-FC) classifier with its maps to ONNX.

PyTorch's exporter (``torch.onnx.export(..., dynamo=True)``: ``torch.export``
then onnxscript's translation) writes the :class:`InferenceGraph` of a
config + checkpoint as one self-contained ``.onnx`` file with a dynamic batch
dimension, checks it with ``onnx.checker`` and stores what a runtime needs
to feed and read it as ONNX ``metadata_props`` (:data:`METADATA_KEYS`).
"""
from __future__ import annotations

import importlib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.apis import get_model
from torch import nn

from ..evaluation.wsol_eval import build_split, load_config, maps_config
from ..version import __version__
from .graph import INPUT_NAME, InferenceGraph

#: The optional packages of ``pip install mmsaol[deploy]``.
DEPLOY_PACKAGES = ('onnx', 'onnxruntime', 'onnxscript')
#: Batch size of the example input the graph is traced with. The batch
#: dimension is exported as dynamic; an example of 1 would let the tracer
#: specialise on it, hence 2.
EXPORT_BATCH = 2
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


class MissingDeployDependency(ImportError):
    """An optional package of the deploy extra is not installed."""


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
        opset (int): the ONNX opset of the default domain.
        metadata (Dict[str, str]): the ``metadata_props`` written.
    """

    path: str
    outputs: str
    output_names: List[str]
    input_size: Tuple[int, int]
    opset: int
    metadata: Dict[str, str]


def load_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None) -> nn.Module:
    """A classifier in eval mode, ready for :class:`InferenceGraph`.

    A GAP-FC model (``LinearClsHead`` after ``GlobalAveragePooling``) is
    built with :class:`CAMHead` and no neck (same weights; see
    :func:`mmsaol.evaluation.maps_config`). The checkpoint is loaded with
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
        if not osp.isfile(checkpoint) and '://' not in checkpoint:
            raise FileNotFoundError(f'Checkpoint {checkpoint!r} not found.')
        try:
            loaded = load_checkpoint(model, checkpoint, map_location='cpu',
                                     strict=True, logger='silent')
        except RuntimeError as error:
            if 'do not match exactly' not in str(error):
                raise
            detail = ' '.join(str(error).split())
            detail = detail if len(detail) < 400 else detail[:400] + ' ...'
            raise ValueError(
                f'The checkpoint {checkpoint} does not fit the config '
                f'({detail}); export it with the config it was trained with.'
            ) from None
        meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
        if meta.get('dataset_meta'):
            model._dataset_meta = meta['dataset_meta']
    return model.eval()


def _size_of(value: Any) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of an mmcv size argument (an int, or ``(w, h)``)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[1]), int(value[0])
    return None


def default_input_size(cfg: Config) -> Tuple[int, int]:
    """The image size the config's test pipeline gives the network: the
    last ``crop_size`` (CenterCrop and its kin) or fixed ``Resize`` scale,
    else the size of the test data set's first image."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline', [])
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
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline')
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


def export_graph(graph: InferenceGraph, out: str,
                 input_size: Sequence[int],
                 opset: Optional[int] = None,
                 metadata: Optional[Dict[str, str]] = None) -> int:
    """Write ``graph`` to ``out`` with a dynamic batch dimension, add the
    metadata, and check the file with ``onnx.checker``.

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
    with torch.no_grad():
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
                         input_size=input_size, opset=opset_used,
                         metadata=metadata)
