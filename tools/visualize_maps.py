#!/usr/bin/env python
"""Draw SAOL's attention and class maps (or a GAP-FC model's CAMs).

    python tools/visualize_maps.py CONFIG CHECKPOINT INPUT... --out-dir DIR
        [--topk 2] [--box-thr T] [--contact-sheet NAME.png]
    python tools/visualize_maps.py CONFIG CHECKPOINT --split val --num 16 \\
        --out-dir DIR [--contact-sheet sheet.png]

INPUT: image files and/or folders. ``--split``: the config's data loader of
that split instead (ground-truth boxes drawn in green when the data set has
them). Writes ``DIR/<name>.png`` per image: the image, the attention map and
the top-k class maps with class names and probabilities.
"""
import argparse

from mmengine.config import DictAction

from mmsaol.apis.cli import resolve_config
from mmsaol.visualization import visualize_maps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Draw SAOL's maps (CAM for GAP-FC models).")
    parser.add_argument('config', help='model config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', nargs='*', help='image files or folders')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--split', choices=('val', 'test', 'train'),
                        help="draw the config's data split instead")
    parser.add_argument('--num', type=int, default=None,
                        help='with --split: the first NUM images')
    parser.add_argument('--topk', type=int, default=2,
                        help='class maps per image (default 2)')
    parser.add_argument('--box-thr', type=float, default=None,
                        help="also draw each map's box at this threshold")
    parser.add_argument('--contact-sheet', default=None, metavar='NAME.png',
                        help='also write a contact sheet of the pictures')
    parser.add_argument('--sheet-columns', type=int, default=2)
    parser.add_argument('--sheet-max', type=int, default=64,
                        help='most pictures on the contact sheet')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='batch size with --split')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.split):
        parser.error('give image files/folders or --split, not both')
    return args


def main(argv=None) -> list:
    args = parse_args(argv)
    return visualize_maps(
        resolve_config(args.config), args.checkpoint, args.out_dir,
        inputs=args.inputs, split=args.split, num=args.num, topk=args.topk,
        batch_size=args.batch_size, device=args.device,
        cfg_options=args.cfg_options, box_thr=args.box_thr,
        sheet=args.contact_sheet, sheet_columns=args.sheet_columns,
        sheet_max=args.sheet_max)


if __name__ == '__main__':
    main()
