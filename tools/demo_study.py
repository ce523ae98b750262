#!/usr/bin/env python
"""Train every demo variant with several seeds and print the README table.

    python tools/demo_study.py [--seeds 0 1 2] [--work-dir work_dirs/study]
        [--out study.json] [--cfg-options k=v ...]

Variants: GAP-FC + CutMix, SAOL + CutMix, + self-supervision with label
maps (L), + self-annotated self-supervision (S), + S and distillation (the
demo config: SAOL and its GAP-FC branch). Each run is a real
tools/train.py run of the demo config; the last checkpoint is evaluated
with tools/test.py (top-1) and tools/eval_wsol.py (localisation of SAOL's
attention and class maps, or CAM for GAP-FC).
"""
import argparse
import json

from mmsaol.apis.study import DEMO_VARIANTS, markdown_tables, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/demo_study')
    parser.add_argument('--out', default=None, help='write results as JSON')
    parser.add_argument('--only', nargs='+', default=None,
                        help='run only the variants whose name contains one '
                        'of these words')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs side by side (one thread each)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides for every run')
    args = parser.parse_args()
    variants = [v for v in DEMO_VARIANTS if args.only is None
                or any(w in v.name for w in args.only)]
    results = run_study(variants, args.seeds, args.work_dir,
                        args.cfg_options, args.jobs)
    print(markdown_tables(results, args.seeds))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(seeds=args.seeds, results=results), f, indent=2)


if __name__ == '__main__':
    main()
