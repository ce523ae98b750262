#!/usr/bin/env python
"""Export a SAOL model with its maps (or a GAP-FC model with CAMs) to ONNX;
same as ``mmsaol export-onnx`` (see :mod:`mmsaol.apis.export_onnx`)."""
from mmsaol.apis.export_onnx import main

if __name__ == '__main__':
    main()
