#!/usr/bin/env python
"""Run a resumable seed study (variants x seeds) and print its tables.

    python tools/study.py STUDY [--seeds 0 1 2] [--jobs N] [--only WORD ...]
        [--table] [--results-dir results] [--work-dir work_dirs/study]
        [--cfg-options k=v ...]
    python tools/study.py --prepare-fashion-mnist

STUDY is a name (demo, fashion-mnist, fashion-mnist-ablation) or a JSON
study file. Finished runs are recorded in results/<study>/ and skipped the
next time; --table prints the tables of the records without running.
"""
from mmsaol.apis.study import main

if __name__ == '__main__':
    main()
