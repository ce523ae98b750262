"""Command-line entries behind ``tools/train.py`` and ``tools/test.py``.

They are mmpretrain's own ``tools/train.py`` / ``tools/test.py`` (loaded from
the installed mmpretrain, so the flags and their meaning are exactly
mmpretrain's) with mmsaol imported, configs also looked up inside the
installed mmsaol package, the host fixes of :mod:`mmsaol.compat.runtime`
applied, and a few SAOL flags.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmsaol  # noqa: F401  (registers components, safe checkpoint loader)
from mmsaol.compat import CorruptCheckpointError, UnsafeCheckpointError
from mmsaol.compat.runtime import adapt_to_host
from mmsaol.engine import NonFiniteLossError, WorkDirError, work_dir_error

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: Errors that mean "change your config, command or file": the tools print
#: their sentence, not a traceback (``MMSAOL_DEBUG=1`` shows it).
USER_ERRORS = (ValueError, FileNotFoundError, CorruptCheckpointError,
               UnsafeCheckpointError, NonFiniteLossError, WorkDirError)
T = TypeVar('T')


def user_errors_as_messages(entry: Callable[..., T]) -> Callable[..., T]:
    """Run a command-line entry; a user error exits with status 2 and one
    line ``<tool>: error: <sentence>`` instead of a traceback."""

    @functools.wraps(entry)
    def wrapper(*args, **kwargs) -> T:
        try:
            return entry(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get('MMSAOL_DEBUG'):
                raise
            name = osp.basename(sys.argv[0]) or entry.__name__
            print(f'{name}: error ({type(error).__name__}): {error}\n'
                  '(set MMSAOL_DEBUG=1 for the traceback)', file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def mmpretrain_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` of the installed mmpretrain."""
    import mmpretrain
    path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                    f'{name}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'mmpretrain tool {path} is missing; reinstall mmpretrain==1.2.0 '
            'from its wheel (it ships tools/ under mmpretrain/.mim).')
    spec = importlib.util.spec_from_file_location(f'mmpretrain_tools_{name}',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve_config(path: str) -> str:
    """A config path as given, or else the same path inside the installed
    package (``pip install .`` ships ``configs/`` as ``mmsaol/.mim/configs``).
    """
    if osp.isfile(path):
        return path
    relative = path.split('configs/', 1)[-1]
    for root in (osp.join(PACKAGE_DIR, '.mim', 'configs'),
                 osp.join(osp.dirname(PACKAGE_DIR), 'configs')):
        candidate = osp.join(root, relative)
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'Config {path!r} not found (also looked in the installed mmsaol '
        "configs). Give a path such as configs/saol_demo.py.")


def _split_args(extra: argparse.ArgumentParser, tool: ModuleType,
                argv: Sequence[str]) -> Tuple[argparse.Namespace,
                                              argparse.Namespace]:
    """Parse mmsaol's extra flags, then mmpretrain's own flags."""
    if '-h' in argv or '--help' in argv:
        sys.argv = [sys.argv[0], '--help']
        try:
            tool.parse_args()
        finally:
            extra.print_help()
    ours, rest = extra.parse_known_args(argv)
    saved = sys.argv
    sys.argv = [saved[0], *rest]
    try:
        args = tool.parse_args()
    finally:
        sys.argv = saved
    args.config = resolve_config(args.config)
    return ours, args


def _build_runner(cfg: Config) -> Runner:
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


@user_errors_as_messages
def train(argv: Optional[List[str]] = None) -> None:
    """``tools/train.py``: mmpretrain's training entry with mmsaol."""
    tool = mmpretrain_tool('train')
    extra = argparse.ArgumentParser(
        add_help=False, description='mmsaol additions to the flags above')
    extra.add_argument('--seed', type=int, default=None,
                       help='random seed (overrides randomness.seed)')
    ours, args = _split_args(extra, tool, sys.argv[1:] if argv is None
                             else argv)
    cfg = Config.fromfile(args.config)
    cfg = tool.merge_args(cfg, args)
    if ours.seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=ours.seed)
    adapt_to_host(cfg, amp=args.amp)
    try:
        _build_runner(cfg).train()
    except OSError as error:
        explained = work_dir_error(error, cfg.work_dir)
        if explained is None:
            raise
        raise explained from error


def _set_test_output(cfg: Config, head: str) -> None:
    """Choose the SAOLHead output that ``test()`` evaluates
    (``head.test_output``) on the classifier itself, also when ``--tta``
    has wrapped it (mmpretrain's ``merge_args`` makes ``cfg.model`` the
    test-time-augmentation model with the classifier as its ``module``)."""
    from mmpretrain.registry import MODELS

    from mmsaol.models.heads.saol_head import SAOLHead
    model, path = cfg.model, 'model'
    while 'module' in model:
        model, path = model.module, f'{path}.module'
    head_cfg = model.get('head') or {}
    head_type = head_cfg.get('type')
    head_cls = head_type if isinstance(head_type, type) else \
        MODELS.get(head_type) if head_type else None
    if not (isinstance(head_cls, type) and issubclass(head_cls, SAOLHead)):
        raise ValueError(
            f'--head chooses an output of SAOLHead, but {path}.head.type is '
            f'{head_type!r}: leave --head out for this model.')
    head_cfg.test_output = head


@user_errors_as_messages
def test(argv: Optional[List[str]] = None) -> dict:
    """``tools/test.py``: mmpretrain's test entry with mmsaol."""
    tool = mmpretrain_tool('test')
    extra = argparse.ArgumentParser(
        add_help=False, description='mmsaol additions to the flags above')
    extra.add_argument(
        '--head', choices=('saol', 'gapfc'), default=None,
        help="which SAOLHead output to evaluate (model.head.test_output): "
        "'saol' or the self-distilled 'gapfc' branch")
    ours, args = _split_args(extra, tool, sys.argv[1:] if argv is None
                             else argv)
    if args.out is None and args.out_item is not None:
        raise SystemExit('Use --out FILE together with --out-item.')
    cfg = Config.fromfile(args.config)
    cfg = tool.merge_args(cfg, args)
    if ours.head is not None:
        _set_test_output(cfg, ours.head)
    adapt_to_host(cfg, amp=False)
    runner = _build_runner(cfg)
    if args.out and args.out_item in ('pred', None):
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        import mmengine
        mmengine.dump(metrics, args.out)
    return metrics
