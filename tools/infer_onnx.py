#!/usr/bin/env python
"""Predict images with an exported ONNX model in ONNX Runtime and draw its
maps; same as ``mmsaol infer-onnx`` (see :mod:`mmsaol.apis.infer_onnx`)."""
from mmsaol.apis.infer_onnx import main

if __name__ == '__main__':
    main()
