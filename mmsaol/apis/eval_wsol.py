"""``tools/eval_wsol.py`` (``mmsaol wsol``): weakly-supervised localisation
accuracy of a checkpoint.

A config rewrite around mmengine's ``Runner.test`` (:func:`wsol_config`):
the model attaches the maps to score (SAOL's, CAMs, or Grad-CAM-style maps
of a stock classifier), the test evaluator is top-1 ``Accuracy`` plus
``WSOLMetric`` (the standard protocol of Choe et al., CVPR 2020), and the
test loader reads the chosen split. The Runner brings what any
``tools/test.py`` run has: ``--launcher`` (several processes; the metric
gathers the per-image results), the log and config in ``--work-dir``, and
the config's visualizer backends (``--draw`` sends map pictures there).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process

from mmsaol.apis.cli import (
    add_model_args,
    build_runner,
    user_errors_as_messages,
)
from mmsaol.checks import check_choice
from mmsaol.compat.config import load_config
from mmsaol.compat.runtime import adapt_to_host
from mmsaol.engine import atomic_write
from mmsaol.model_configs import (
    GAPFC_HEADS,
    SAOL_HEADS,
    maps_config,
    type_name,
)
from mmsaol.visualization.gradcam import GRADCAM_METHODS, gradcam_config

#: Maps ``wsol_config`` scores: SAOL's class maps or attention, CAMs, and the
#: grad-cam package's maps of any stock classifier.
MAP_SOURCES = ('class', 'attention', 'cam', *GRADCAM_METHODS)
#: Splits ``wsol_config`` evaluates (their pipelines only resize).
WSOL_SPLITS = ('test', 'val')


def wsol_config(cfg: Config,
                map: str = 'class',
                split: str = 'test',
                num: Optional[int] = None,
                batch_size: Optional[int] = None,
                **metric_kwargs) -> Config:
    """A copy of ``cfg`` whose ``Runner.test()`` gives classification and
    WSOL accuracy (what ``tools/eval_wsol.py`` runs).

    The model attaches one map per class (:func:`maps_config` with
    ``topk='all'``, so the true class always has one), ``test_evaluator``
    becomes top-1 ``Accuracy`` and :class:`WSOLMetric`, and
    ``test_dataloader`` reads the chosen split.

    Args:
        cfg (Config): Model and data config.
        map (str): ``'class'`` or ``'attention'`` (SAOL models),
            ``'cam'`` (GAP-FC models, scored by their class activation
            maps), or ``'gradcam'``, ``'gradcam++'``, ``'layercam'`` (any
            stock ``ImageClassifier``, see
            :class:`~mmsaol.visualization.gradcam.GradCAMClassifier`).
        split (str): Data loader of the config to read: ``'test'``
            (default) or ``'val'``.
        num (int, optional): Evaluate the first ``num`` images only.
        batch_size (int, optional): Defaults to the data loader's.
        **metric_kwargs: Other arguments of :class:`WSOLMetric`
            (``threshold_interval``, ``threshold``, ``iou_thr``...).

    Returns:
        Config: the modified copy.
    """
    check_choice(map, MAP_SOURCES, 'map')
    check_choice(split, WSOL_SPLITS, 'split')
    if map in GRADCAM_METHODS:
        cfg = gradcam_config(cfg, map)
    else:
        head_type = type_name(cfg.model.head)
        wanted = GAPFC_HEADS if map == 'cam' else SAOL_HEADS
        if head_type not in wanted:
            raise ValueError(
                f'map={map!r} needs model.head.type in {wanted}, but the '
                f"config has {head_type!r}: use map='cam' (or 'gradcam') "
                "for GAP-FC models and 'class' or 'attention' for SAOL "
                'models.')
        cfg = maps_config(cfg, topk='all')
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        raise ValueError(f'The config has no {split}_dataloader to '
                         'evaluate.')
    loader = copy.deepcopy(loader)
    if num is not None:
        if num < 1:
            raise ValueError(f'num must be a positive count, got {num}.')
        loader.dataset.indices = int(num)
    if batch_size is not None:
        loader.batch_size = int(batch_size)
    cfg.test_dataloader = loader
    cfg.test_evaluator = [
        dict(type='Accuracy', topk=(1, )),
        dict(type='WSOLMetric',
             map='attention' if map == 'attention' else 'class',
             **metric_kwargs),
    ]
    if cfg.get('test_cfg') is None:
        cfg.test_cfg = dict()
    return cfg


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/eval_wsol.py``."""
    parser = argparse.ArgumentParser(
        description='WSOL accuracy of a checkpoint by the standard protocol '
        '(Choe et al., CVPR 2020): MaxBoxAcc (IoU 0.5), MaxBoxAccV2 (IoU '
        '0.3/0.5/0.7, all contours) or PxAP (masks); also top-1 accuracy, '
        'GT-known and top-1 localisation at --thr and the pointing game, by '
        "mmengine's Runner.test with WSOLMetric.")
    add_model_args(parser)
    parser.add_argument(
        '--map', choices=MAP_SOURCES, default='class',
        help="which map is scored: 'class' (SAOL's A*Y_c, default) or "
        "'attention' (SAOL's A) for SAOL models, 'cam' (class activation "
        "maps, same checkpoint) for GAP-FC models, 'gradcam', 'gradcam++' "
        "or 'layercam' (grad-cam package, automatic target layer) for any "
        'stock ImageClassifier')
    parser.add_argument('--split', choices=WSOL_SPLITS, default='test',
                        help="data loader of the config (default 'test')")
    parser.add_argument('--num', '--num-images', type=int, default=None,
                        dest='num', metavar='NUM',
                        help='evaluate the first NUM images only (spell it '
                        '--num-images after torchrun, which takes --num '
                        'for its own --numa-binding)')
    parser.add_argument('--thr', type=float, default=0.2,
                        help='threshold of GT-known / top-1 localisation on '
                        'the min-max normalised map (default 0.2)')
    parser.add_argument('--interval', type=float, default=0.01,
                        help='step of the threshold sweep of MaxBoxAcc and '
                        'PxAP (default 0.01, the protocol\'s command line; '
                        'its training config uses 0.001)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help="default: the data loader's")
    parser.add_argument('--draw', type=int, default=0, metavar='N',
                        help='also send the maps of the first N images to '
                        "the config's visualizer backends (SAOLMapsHook)")
    parser.add_argument('--out', default=None, help='write metrics as JSON')
    parser.add_argument('--work-dir', default=None,
                        help='folder for the log and the config (default '
                        './work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings, key=value as in tools/test.py, applied '
        'last: test_dataloader is the chosen split, test_evaluator.1 the '
        "WSOLMetric (e.g. test_evaluator.1.iou_thr=0.7)")
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (as to tools/test.py).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def wsol_test_config(args: argparse.Namespace) -> Config:
    """The config ``Runner.test`` runs for parsed arguments."""
    cfg = wsol_config(load_config(args.config),
                      map=args.map, split=args.split, num=args.num,
                      batch_size=args.batch_size, threshold=args.thr,
                      threshold_interval=args.interval)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(
            osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.draw:
        hooks: List[dict] = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='SAOLMapsHook', num_images=args.draw))
        cfg.custom_hooks = hooks
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


@user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    """Evaluate; print the metrics and write them to ``--out``."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = adapt_to_host(wsol_test_config(args), amp=False)
    metrics = build_runner(cfg).test()
    if is_main_process():
        print()
        for key, value in metrics.items():
            print(f'{key}: {value:.2f}')
        if args.out:  # never a half-written record (a kill, a full disk)
            atomic_write(json.dumps(metrics, indent=2), args.out)
    return metrics
