"""``mmsaol export-onnx`` / ``tools/export_onnx.py``: a SAOL (or GAP-FC)
model with its maps to ONNX (see :func:`mmsaol.deploy.export_onnx`).

    mmsaol export-onnx CONFIG CHECKPOINT OUT.onnx [--head saol|gapfc]
        [--topk K] [--no-normalize] [--input-size H W] [--opset N]
        [--cfg-options k=v ...]
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

from ..compat.config import resolve_config
from ..deploy.export import ExportedModel, export_onnx
from ..engine import atomic_path
from .cli import add_model_args, user_errors_as_messages, writing


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``mmsaol export-onnx``."""
    parser = argparse.ArgumentParser(
        description='Export a SAOL model with its attention and class maps '
        "(or a GAP-FC model with CAMs) to ONNX, with a dynamic batch "
        'dimension; checked with onnx.checker.')
    add_model_args(parser)
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument(
        '--head', choices=('saol', 'gapfc'), default=None,
        help="'saol': probs, attention, class_maps, class_map_labels (the "
        "default for SAOL models); 'gapfc': probs alone, of a SAOL head's "
        'self-distilled GAP-FC branch or of a GAP-FC model (default for '
        'GAP-FC models: probs and class activation maps)')
    parser.add_argument('--topk', type=int, default=2,
                        help='class maps per image (default 2)')
    parser.add_argument('--no-normalize', action='store_true',
                        help="leave the data preprocessor's channel flip "
                        'and mean/std out of the graph (stored as metadata '
                        'for the caller to apply)')
    parser.add_argument('--input-size', type=int, nargs='+', default=None,
                        metavar='S', help='input height width (or one side); '
                        "default: the size the config's test pipeline gives")
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset (default: the exporter's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.input_size is not None:
        if len(args.input_size) not in (1, 2):
            parser.error('--input-size takes one or two numbers')
        args.input_size = (args.input_size[0], args.input_size[-1])
    return args


@user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> ExportedModel:
    """Export, print what was written, return it."""
    args = parse_args(argv)
    # Written under a temporary name next to OUT and renamed once checked:
    # a kill, a full disk or a failed check leaves the previous OUT intact.
    with writing(args.out), atomic_path(args.out) as temp:
        exported = export_onnx(
            resolve_config(args.config), args.checkpoint, temp,
            head=args.head, topk=args.topk, normalize=not args.no_normalize,
            input_size=args.input_size, opset=args.opset,
            cfg_options=args.cfg_options)
    exported.path = args.out
    height, width = exported.input_size
    print(f'wrote {exported.path} ({osp.getsize(exported.path) / 2**20:.1f} '
          f'MiB, opset {exported.opset}): input `inputs` (N, '
          f'{exported.input_channels}, {height}, {width}), N dynamic; '
          'outputs '
          + ', '.join(f'`{n}`' for n in exported.output_names)
          + '; checked with onnx.checker', file=sys.stderr)
    return exported


if __name__ == '__main__':
    main()
