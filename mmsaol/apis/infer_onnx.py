"""``mmsaol infer-onnx`` / ``tools/infer_onnx.py``: predict image files with
an exported model in ONNX Runtime (CPU) and draw its maps.

    mmsaol infer-onnx MODEL.onnx IMAGE... [--out-dir DIR] [--topk K]
        [--scale shared|per-map] [--box-thr T] [--batch-size B]
        [--threads T]

Prints one line per image (the top classes with their probabilities) and,
with ``--out-dir``, writes ``DIR/<name>.png``: the image, the attention map
and the top-k class maps, drawn by the same functions as
``tools/visualize_maps.py``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import torch

from ..deploy.runtime import OnnxClassifier
from ..visualization import display_image, render_maps, save_png
from .cli import user_errors_as_messages
from .visualize_maps import _unique, add_picture_flags, list_images


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``mmsaol infer-onnx``."""
    parser = argparse.ArgumentParser(
        description='Predict images with an exported mmsaol ONNX model in '
        'ONNX Runtime (CPU); optionally draw its maps.')
    parser.add_argument('model', help='the .onnx file (mmsaol export-onnx)')
    parser.add_argument('inputs', nargs='+', help='image files or folders')
    parser.add_argument('--out-dir', default=None,
                        help='write one picture of the maps per image here')
    parser.add_argument('--topk', type=int, default=None,
                        help='classes printed and class maps drawn per '
                        'image (default: as exported)')
    add_picture_flags(parser)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--threads', type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: its "
                        'choice)')
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ('topk', 'batch_size', 'threads'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    return args


@user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> List[Dict]:
    """Predict (and draw) every image; return one dict per image:
    ``image``, ``pred_label``, ``pred_class``, ``pred_score``, ``topk``
    (``[label, class, probability]`` triples) and ``picture`` (or None)."""
    args = parse_args(argv)
    model = OnnxClassifier(args.model, threads=args.threads)
    topk = args.topk or model.meta.get('topk', 2)
    draw = args.out_dir is not None
    if draw and not model.has_maps:
        print(f'{args.model} has no maps (exported with --head gapfc): '
              'no pictures are written.', file=sys.stderr)
        draw = False
    if draw:
        os.makedirs(args.out_dir, exist_ok=True)
    paths = list_images(args.inputs)
    results, used = [], set()
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start:start + args.batch_size]
        loaded = [model.load_image(path) for path in chunk]
        inputs = torch.stack([image for image, _ in loaded])
        samples = model.predict(inputs, [sample for _, sample in loaded])
        for path, image, sample in zip(chunk, inputs, samples):
            name = osp.splitext(osp.basename(path))[0]
            scores = sample.pred_score
            top = scores.topk(min(topk, scores.numel())).indices.tolist()
            ranked = [[k, model.class_name(k), float(scores[k])]
                      for k in top]
            picture = None
            if draw:
                picture = osp.join(args.out_dir,
                                   _unique(name, used) + '.png')
                save_png(render_maps(
                    display_image(image, bool(model.meta.get('to_rgb'))),
                    sample, model.classes, topk=topk, title=name,
                    box_thr=args.box_thr, scale=args.scale), picture)
            print(f'{path}: ' + '; '.join(f'{c} {p:.4f}'
                                          for _, c, p in ranked))
            results.append(dict(
                image=path, pred_label=ranked[0][0],
                pred_class=ranked[0][1], pred_score=ranked[0][2],
                topk=ranked, picture=picture))
    if draw:
        print(f'wrote {len(results)} pictures to {args.out_dir}',
              file=sys.stderr)
    return results


if __name__ == '__main__':
    main()
