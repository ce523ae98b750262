"""What every tool shares: the error wrapper of their ``main``
(:func:`user_errors_as_messages`), mmpretrain's own ``tools/train.py`` and
``tools/test.py`` as the base of :mod:`mmsaol.apis.train` and
:mod:`mmsaol.apis.test` (:func:`mmpretrain_setup`), and the Runner they
build.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType
from typing import Callable, Iterator, Optional, Sequence, Tuple, TypeVar

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmsaol  # noqa: F401  (registers components, safe checkpoint loader)
from mmsaol import troubleshooting
from mmsaol.checks import MissingDeployDependency
from mmsaol.compat import CorruptCheckpointError, UnsafeCheckpointError
from mmsaol.compat.config import resolve_config
from mmsaol.compat.runtime import adapt_to_host
from mmsaol.engine import NonFiniteLossError, WorkDirError


class OutputError(OSError):
    """A tool cannot write its output file: no space, no permission, or a
    folder of that name in the way."""


#: Errors that mean "change your config, command or file" (or "install the
#: deploy extra"): the tools print their sentence, not a traceback
#: (``MMSAOL_DEBUG=1`` shows it).
USER_ERRORS = (ValueError, FileNotFoundError, CorruptCheckpointError,
               UnsafeCheckpointError, NonFiniteLossError, WorkDirError,
               MissingDeployDependency, OutputError, SyntaxError,
               ImportError)
#: errno values of a write that the user can fix (space, permission, a
#: folder at the file's name).
WRITE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EACCES,
                          errno.EPERM, errno.EROFS, errno.EISDIR))
T = TypeVar('T')


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn a failed write of ``path`` (full disk, no permission, a folder
    in the way) into :class:`OutputError`, one sentence naming the file.
    Writes go through :func:`~mmsaol.engine.atomic_path`, so the previous
    version of the file is intact."""
    try:
        yield
    except OSError as error:
        if isinstance(error, OutputError) or error.errno not in WRITE_ERRNOS:
            raise
        raise OutputError(
            f'Cannot write {path}: {error.strerror or error} '
            f'({error.filename or path}); its previous version, if any, is '
            'unchanged. Free space, fix the permissions or pick another '
            'output path.') from None


def _one_line(error: BaseException) -> str:
    """An error's message on one line (a config's SyntaxError names the
    file and line)."""
    if isinstance(error, SyntaxError) and error.filename:
        return (f'{error.filename}, line {error.lineno}: {error.msg}: fix '
                'the syntax of the config.')
    if isinstance(error, ImportError):
        cause: Optional[BaseException] = error
        while cause is not None and not getattr(cause, 'name', None):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            return (f'no module named {cause.name!r} (the custom_imports of '
                    'the config, or a package that is not installed): '
                    'install it or fix the name.')
    return ' '.join(str(error).split())


def _fix_hint(message: str) -> str:
    """`` Fix: <fix>`` of the troubleshooting row whose quoted text
    occurs in ``message`` (:func:`mmsaol.troubleshooting.match`), on one
    line; empty when no row quotes it."""
    row = troubleshooting.match(message)
    return f' Fix: {" ".join(row.fix.split())}' if row else ''


#: errno values of a path the user named that cannot be used as asked
#: (missing, a folder where a file is read, a file where a folder is made).
READ_ERRNOS = frozenset((errno.ENOENT, errno.EISDIR, errno.ENOTDIR,
                         errno.EEXIST))


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` means "change your command, config or file":
    one of :data:`USER_ERRORS`, or an ``OSError`` about a named file
    (missing, a folder, no space or permission; or without an errno: a
    file in an unsupported format, as mmengine's config loader and
    Pillow raise)."""
    if isinstance(error, USER_ERRORS):
        return True
    return isinstance(error, OSError) and (
        error.errno is None or error.errno in READ_ERRNOS | WRITE_ERRNOS)


def user_errors_as_messages(entry: Callable[..., T]) -> Callable[..., T]:
    """Wrap the ``main`` of a tool: a user error (:data:`USER_ERRORS`)
    exits with status 2 and exactly one line ``<tool>: error (<type>):
    <sentence>`` on stderr instead of a traceback (with `` Fix: ...`` of
    the troubleshooting row of the message, when there is one, on the same
    line). Every tool's ``main`` goes through it."""

    @functools.wraps(entry)
    def wrapper(*args, **kwargs) -> T:
        try:
            return entry(*args, **kwargs)
        except (*USER_ERRORS, OSError) as error:
            if os.environ.get('MMSAOL_DEBUG') or not is_user_error(error):
                raise
            name = osp.basename(sys.argv[0]) or entry.__name__
            message = _one_line(error)
            print(f'{name}: error ({type(error).__name__}): '
                  f'{message}{_fix_hint(message)} (MMSAOL_DEBUG=1 shows '
                  'the traceback)', file=sys.stderr)
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


def add_model_args(parser: argparse.ArgumentParser,
                   config_help: str = 'model config',
                   checkpoint_help: str = 'checkpoint file') -> None:
    """The positional ``config`` and ``checkpoint`` of every tool that
    loads a trained model."""
    parser.add_argument('config', help=config_help)
    parser.add_argument('checkpoint', help=checkpoint_help)


def mmsaol_flags() -> argparse.ArgumentParser:
    """An empty parser for the flags mmsaol adds to one of mmpretrain's
    tools (parsed before the tool's own)."""
    return argparse.ArgumentParser(
        add_help=False, description='mmsaol additions to the flags above')


def mmpretrain_setup(
    name: str, extra: argparse.ArgumentParser,
    argv: Optional[Sequence[str]] = None
) -> Tuple[argparse.Namespace, argparse.Namespace, Config]:
    """Parse the command line of mmpretrain's ``tools/<name>.py`` plus
    mmsaol's ``extra`` flags and build its config.

    The config (found by :func:`~mmsaol.compat.config.resolve_config`) gets
    mmpretrain's flags merged in by the tool's own ``merge_args``, then the
    host fixes of :func:`~mmsaol.compat.runtime.adapt_to_host`.

    Returns:
        Tuple: mmsaol's flags, mmpretrain's flags and the config.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    tool = mmpretrain_tool(name)
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
    cfg = tool.merge_args(Config.fromfile(args.config), args)
    # --amp of tools/train.py is mixed-precision training (the optimizer
    # wrapper adapt_to_host fixes on a CPU host); tools/test.py's only
    # switches test-time fp16.
    adapt_to_host(cfg, amp=name == 'train' and args.amp)
    return ours, args, cfg


def build_runner(cfg: Config) -> Runner:
    """The Runner of a config, as mmpretrain's tools build it."""
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
