#!/usr/bin/env python
"""Weakly-supervised localisation (WSOL) accuracy of a checkpoint.

    python tools/eval_wsol.py CONFIG CHECKPOINT [--map class|attention|cam]
        [--split test] [--num N] [--thr 0.2] [--out FILE.json]

``--map class`` / ``attention``: a SAOL model's class map ``A * Y_c`` / its
attention map ``A``; ``--map cam``: a GAP-FC model's class activation maps
(same checkpoint, read through CAMHead). Prints top-1 accuracy, GT-known
and top-1 localisation at ``--thr``, MaxBoxAcc (IoU 0.5) and MaxBoxAccV2
(mean over IoU 0.3/0.5/0.7).
"""
import argparse
import json

from mmengine.config import DictAction

from mmsaol.apis.cli import resolve_config
from mmsaol.evaluation import evaluate_wsol


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='WSOL accuracy')
    parser.add_argument('config', help='model config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--map', choices=('class', 'attention', 'cam'),
                        default='class', help='which map is scored')
    parser.add_argument('--split', choices=('test', 'val', 'train'),
                        default='test', help='data loader of the config')
    parser.add_argument('--num', type=int, default=None,
                        help='evaluate the first NUM images only')
    parser.add_argument('--thr', type=float, default=0.2,
                        help='threshold of GT-known / top-1 localisation')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', default=None, help='write metrics as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    metrics = evaluate_wsol(
        resolve_config(args.config), args.checkpoint, map=args.map,
        split=args.split, num=args.num, batch_size=args.batch_size,
        device=args.device, cfg_options=args.cfg_options,
        threshold=args.thr)
    print()
    for key, value in metrics.items():
        print(f'{key}: {value:.2f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
