#!/usr/bin/env python
"""The demo tables of docs/results.md ("Demo results"):
``tools/study.py demo`` (same flags).

    python tools/demo_study.py [--seeds 0 1 2] [--jobs 2] [--table]
"""
import sys

from mmsaol.apis.study import main

if __name__ == '__main__':
    main(['demo', *sys.argv[1:]])
