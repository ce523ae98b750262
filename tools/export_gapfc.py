#!/usr/bin/env python
"""Export a self-distilled SAOL model's GAP-FC branch as stock mmpretrain.

    python tools/export_gapfc.py CONFIG CHECKPOINT OUT_DIR
        [--cfg-options k=v ...]

Writes OUT_DIR/<name>_gapfc.py (ImageClassifier + GlobalAveragePooling +
LinearClsHead, no mmsaol) and OUT_DIR/<name>_gapfc.pth (backbone + GAP-FC
weights only); data sets of mmsaol types (the demo's DigitsCanvas) are
written as image folders under OUT_DIR/data for mmpretrain's CustomDataset,
with progress printed. mmsaol's metrics and hooks are left out (the
exported config must not need mmsaol); each is named with the reason.
"""
from mmsaol.apis.export_gapfc import main

if __name__ == '__main__':
    main()
