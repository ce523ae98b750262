"""Deployment: the inference graph of a SAOL (or GAP-FC) classifier with its
maps, ONNX export and ONNX Runtime inference (``pip install
"mmsaol[deploy]"``; onnx, onnxruntime and onnxscript are imported only when
used)."""
from .export import ExportedModel, export_onnx, load_model
from .graph import OUTPUT_NAMES, InferenceGraph, output_kind

__all__ = [
    'ExportedModel', 'InferenceGraph', 'OUTPUT_NAMES', 'export_onnx',
    'load_model', 'output_kind'
]
