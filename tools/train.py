#!/usr/bin/env python
"""Train a model: mmpretrain's tools/train.py with mmsaol imported.

    python tools/train.py configs/saol_demo.py [--work-dir DIR] [--resume]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...] [--launcher ...]
        [--seed N]
"""
from mmsaol.apis.train import main

if __name__ == '__main__':
    main()
