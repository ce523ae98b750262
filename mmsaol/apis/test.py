"""``tools/test.py`` (``mmsaol test``): mmpretrain's own test tool with
mmsaol, as :mod:`mmsaol.apis.train` is for training, plus ``--head`` (which
output of a SAOL head is evaluated).

Checkpoints are loaded weights-only with an allow-list: a checkpoint that
would run code when unpickled is refused.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from mmengine.config import Config

from mmsaol.apis import cli
from mmsaol.model_configs import is_saol_head


def build_parser() -> argparse.ArgumentParser:
    """mmsaol's flags, parsed before mmpretrain's own."""
    parser = cli.mmsaol_flags()
    parser.add_argument(
        '--head', choices=('saol', 'gapfc'), default=None,
        help="which SAOLHead output to evaluate (model.head.test_output): "
        "'saol' or the self-distilled 'gapfc' branch")
    return parser


def set_test_output(cfg: Config, head: str) -> None:
    """Choose the SAOLHead output that the test evaluates
    (``head.test_output``) on the classifier itself, also when ``--tta``
    has wrapped it (mmpretrain's ``merge_args`` makes ``cfg.model`` the
    test-time-augmentation model with the classifier as its ``module``)."""
    model, path = cfg.model, 'model'
    while 'module' in model:
        model, path = model.module, f'{path}.module'
    head_cfg = model.get('head') or {}
    head_type = head_cfg.get('type')
    if not is_saol_head(head_type):
        raise ValueError(
            f'--head chooses an output of SAOLHead, but {path}.head.type is '
            f'{head_type!r}: leave --head out for this model.')
    head_cfg.test_output = head


@cli.user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> dict:
    """Test the checkpoint of the command line; return the metrics."""
    ours, args, cfg = cli.mmpretrain_setup('test', build_parser(), argv)
    if args.out is None and args.out_item is not None:
        raise ValueError('--out-item needs --out FILE: give the file to '
                         'write to, e.g. --out results.pkl.')
    if ours.head is not None:
        set_test_output(cfg, ours.head)
    runner = cli.build_runner(cfg)
    if args.out and args.out_item in ('pred', None):
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        import mmengine
        mmengine.dump(metrics, args.out)
    return metrics
