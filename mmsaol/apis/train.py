"""``tools/train.py`` (``mmsaol train``): mmpretrain's own training tool
with mmsaol.

mmpretrain's ``tools/train.py`` is loaded from the installed mmpretrain, so
the flags and their meaning are exactly mmpretrain's; mmsaol is imported,
configs are also looked up inside the installed mmsaol package, the host
fixes of :mod:`mmsaol.compat.runtime` are applied, and ``--seed`` is added
(:func:`mmsaol.apis.cli.mmpretrain_setup`).
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from mmsaol.apis import cli
from mmsaol.engine import work_dir_error


def build_parser() -> argparse.ArgumentParser:
    """mmsaol's flags, parsed before mmpretrain's own."""
    parser = cli.mmsaol_flags()
    parser.add_argument('--seed', type=int, default=None,
                        help='random seed (overrides randomness.seed)')
    return parser


@cli.user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> None:
    """Train the config of the command line."""
    ours, _, cfg = cli.mmpretrain_setup('train', build_parser(), argv)
    if ours.seed is not None:
        if not 0 <= ours.seed < 2**32:
            raise ValueError(f'--seed {ours.seed}: a seed is an int in '
                             f'0..{2**32 - 1} (numpy takes no other).')
        cfg.randomness = dict(cfg.get('randomness', {}), seed=ours.seed)
    try:
        cli.build_runner(cfg).train()
    except OSError as error:
        explained = work_dir_error(error, cfg.work_dir)
        if explained is None:
            raise
        raise explained from error
