#!/usr/bin/env python
"""Test a checkpoint: mmpretrain's tools/test.py with mmsaol imported.

    python tools/test.py CONFIG CHECKPOINT [--head saol|gapfc] [--out FILE]
        [--tta] [--cfg-options k=v ...] [--launcher ...]

Checkpoints are loaded weights-only with an allow-list: a checkpoint that
would run code when unpickled is refused.
"""
from mmsaol.apis.test import main

if __name__ == '__main__':
    main()
