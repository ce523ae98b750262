"""Safe checkpoint loading for mmengine 0.10.7 on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine
0.10.7 training checkpoints pickle more than tensors (the message hub's
``HistoryBuffer`` objects, numpy arrays and scalars, ...), so its stock
loaders fail on ``--resume`` and in ``tools/test.py``. The upstream fix,
``weights_only=False``, lets a crafted checkpoint run arbitrary code while it
is being loaded.

This module keeps ``weights_only=True`` and allow-lists exactly the extra
types mmengine / mmpretrain checkpoints contain (see :data:`SAFE_GLOBALS`).
The allow-list is only active inside :func:`safe_torch_load` (through the
``torch.serialization.safe_globals`` context manager), so other
``torch.load`` users in the process are not affected.

This shim is for mmengine 0.10.7 on torch >= 2.6 and can go when mmengine
ships allow-listed (``weights_only=True``) checkpoint loading itself.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import struct
import threading
import zipfile
from collections.abc import Iterator
from typing import IO, Any, Union

import numpy as np
import torch
import torch.hub
import torch.serialization
from mmengine.dist import get_dist_info
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'SAFE_GLOBALS', 'CorruptCheckpointError', 'UnsafeCheckpointError',
    'install_safe_checkpoint_loader', 'load_from_http_safe',
    'load_from_local_safe', 'safe_torch_load'
]

FileLike = Union[str, 'os.PathLike[str]', IO[bytes]]
MapLocation = Any

# ``HistoryBuffer`` pickles its registered statistics methods by reference.
# torch.save uses pickle protocol 2, which writes a method such as
# ``HistoryBuffer.mean`` as ``getattr(HistoryBuffer, 'mean')``. These are the
# methods ``HistoryBuffer._set_default_statistics`` registers in
# ``HistoryBuffer._statistics_methods`` (mmengine 0.10.7).
HISTORY_BUFFER_METHODS: frozenset[str] = frozenset(
    ('min', 'max', 'current', 'mean'))


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs something outside the allow-list to be loaded.

    The file was *not* executed: the restricted unpickler stopped before
    calling or building the offending object.
    """


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, damaged or not a checkpoint."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling.

    It only answers ``getattr(HistoryBuffer, <statistics method>)``, which is
    how pickle protocol 2 refers to ``HistoryBuffer``'s statistics methods.
    Anything else is refused, so the checkpoint cannot use attribute access
    to reach other objects (e.g. ``__globals__`` or ``os.system``).
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refused GLOBAL builtins.getattr({_describe(obj)}, {name!r}): '
        'only the statistics methods of mmengine HistoryBuffer '
        f'({", ".join(sorted(HISTORY_BUFFER_METHODS))}) may be looked up '
        'with getattr.')


def _describe(obj: Any) -> str:
    """Short, safe description of an object for error messages."""
    module = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f'{module}.{qualname}'
    name = getattr(obj, '__name__', None)
    if isinstance(name, str):
        return name
    return type(obj).__qualname__


def _numpy_multiarray() -> Any:
    """numpy's ``multiarray`` module (``numpy._core`` in numpy 2)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _numpy_dtype_classes() -> list[type]:
    """The dtype classes (``numpy.dtypes.*DType``) of the builtin dtypes.

    They never appear as names in a pickle, but the unpickler only applies
    the pickled state (BUILD) to allow-listed types, and
    ``numpy.dtype('f8', ...)`` returns a ``Float64DType`` instance. Booleans,
    integers, floats, complex numbers and fixed-width strings / bytes are
    covered; object, void (structured) and datetime dtypes are not.
    """
    classes: list[type] = []
    for code in '?bhilqpBHILQPefdgFDGSU':
        cls = type(np.dtype(code))
        if cls is not np.dtype and cls not in classes:
            classes.append(cls)
    return classes


def _build_safe_globals() -> list[Any]:
    multiarray = _numpy_multiarray()
    safe: list[Any] = [
        # The message hub's log buffers.
        HistoryBuffer,
        # HistoryBuffer's statistics methods are pickled as
        # getattr(HistoryBuffer, 'mean') etc.; plain getattr would open
        # attribute access on anything, so a restricted stand-in answers.
        (_history_buffer_getattr, 'builtins.getattr'),
        # numpy arrays and scalars (HistoryBuffer data, runtime info).
        np.ndarray,
        np.dtype,
        *_numpy_dtype_classes(),
    ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        # numpy 2 writes numpy._core.*, numpy 1.x wrote numpy.core.*.
        safe.append((multiarray._reconstruct, f'{module}._reconstruct'))
        safe.append((multiarray.scalar, f'{module}.scalar'))
    # collections.OrderedDict, collections.Counter and _codecs.encode (used
    # for bytes) are allowed by torch's weights_only unpickler by default.
    return safe


#: Globals allowed, on top of torch's weights_only defaults, while loading a
#: checkpoint. Entries are objects (looked up as ``module.qualname``) or
#: ``(object, 'name.in.the.pickle')`` pairs.
SAFE_GLOBALS: list[Any] = _build_safe_globals()

# torch keeps the allow-list in one process-wide set, so two threads loading
# at the same time would remove each other's entries on exit.
_LOCK = threading.RLock()


@contextlib.contextmanager
def _allow_listed() -> Iterator[None]:
    """Run ``torch.load(weights_only=True)`` calls with SAFE_GLOBALS.

    Only entries that are not already allow-listed are added (and removed
    again on exit), so globals another user of torch added stay in place.
    """
    with _LOCK:
        present = set(torch.serialization.get_safe_globals())
        missing = [g for g in SAFE_GLOBALS if g not in present]
        with torch.serialization.safe_globals(missing), \
                _guard_history_buffer_methods():
            yield


@contextlib.contextmanager
def _guard_history_buffer_methods() -> Iterator[None]:
    """Keep a checkpoint from rewriting ``HistoryBuffer._statistics_methods``.

    ``HistoryBuffer.__setstate__`` merges the pickled statistics methods into
    a class-level dict shared by the whole process. A genuine checkpoint only
    holds the default methods under their own names; anything else (another
    function under ``'mean'``, extra entries) is undone and refused.
    """
    methods = HistoryBuffer._statistics_methods
    before = dict(methods)
    try:
        yield
    except BaseException:
        methods.clear()
        methods.update(before)
        raise
    bad = sorted(
        name for name, fn in methods.items()
        if not (name in before and fn is before[name]) and not (
            name in HISTORY_BUFFER_METHODS
            and fn is getattr(HistoryBuffer, name)))
    if bad:
        methods.clear()
        methods.update(before)
        raise pickle.UnpicklingError(
            'Refused HistoryBuffer statistics methods '
            f'{", ".join(map(repr, bad))}: a checkpoint may only hold '
            "HistoryBuffer's own statistics methods under their own names.")


def _file_name(filename_or_fileobj: FileLike) -> str:
    if isinstance(filename_or_fileobj, (str, os.PathLike)):
        return os.fspath(filename_or_fileobj)
    name = getattr(filename_or_fileobj, 'name', None)
    if isinstance(name, str):
        return name
    return f'<{type(filename_or_fileobj).__name__}>'


# Messages of torch's weights_only unpickler (and of the guards above) that
# mean "this object is not allowed", as opposed to "this is not a pickle".
# The first group, where there is one, names the offending global.
_REFUSAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
    re.compile(r'Refused GLOBAL (builtins\.getattr\(.*?\))(?=: )'),
    re.compile(r'Trying to call reduce for unrecognized function (.+)'),
    re.compile(r'Can only create new object for .* but got (.+)'),
    re.compile(r'Can only build .* but got (.+)'),
    re.compile(r'Refused (HistoryBuffer statistics methods .*?)(?=: )'),
    re.compile(r'(\S+) must be imported to load'),
    re.compile(r'Can only (?:append|SETITEMS?) '),
    re.compile(r'persistent_load|persistent id'),
)
# RuntimeErrors torch raises when weights_only=True cannot load a file that
# plain pickle could (TorchScript archives, the legacy .tar format).
_WEIGHTS_ONLY_RUNTIME_ERRORS = {
    'TorchScript': 'TorchScript code (the file is a TorchScript archive)',
    'legacy .tar format': 'the legacy .tar format (torch < 0.4)',
    'weights_only': 'an object outside the allow-list',
    'Weights only load failed': 'an object outside the allow-list',
}
# RuntimeErrors that are about the target device / map_location rather than
# the file; they are passed through unchanged.
_DEVICE_RUNTIME_ERRORS = ('cuda', 'device', 'restore data location')
# What torch's zip reader, legacy loader and unpickler raise on short or
# garbled input (besides RuntimeErrors and UnpicklingErrors).
_GARBLED_INPUT_ERRORS = (EOFError, zipfile.BadZipFile, IndexError, KeyError,
                         ValueError, AssertionError, struct.error,
                         OverflowError)


def _is_refusal(message: str) -> bool:
    return any(p.search(message) for p in _REFUSAL_PATTERNS)


def _offending_global(message: str) -> str | None:
    """The offending global named in a weights_only error, if any."""
    for pattern in _REFUSAL_PATTERNS:
        match = pattern.search(message)
        if match and pattern.groups:
            found = match.group(1).strip().rstrip('.')
            found = re.sub(r"<class '([^']+)'>", r'\1', found)
            # torch strips the ``builtins.`` prefix from builtins.
            if re.fullmatch(r'[A-Za-z_]\w*', found):
                found = f'builtins.{found}'
            return found
    return None


def _unsafe_error(name: str, message: str,
                  offending: str | None = None) -> UnsafeCheckpointError:
    offending = offending or _offending_global(message) or \
        'an object outside the allow-list'
    return UnsafeCheckpointError(
        f'Refused to load checkpoint {name!r}: it needs {offending}, which '
        'is not allowed. The file was NOT executed: mmsaol only loads '
        'tensors and the types mmengine/mmpretrain checkpoints contain '
        '(weights_only=True with an allow-list). If you trust this file and '
        'it comes from another tool, load it there and re-save its '
        'state_dict with plain tensors, e.g. torch.save({"state_dict": '
        f'model.state_dict()}}, path). (Details: {_detail(message)})')


def _corrupt_error(name: str, exc: BaseException) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f'Cannot read checkpoint {name!r}: the file is truncated, damaged or '
        'not a checkpoint (e.g. the run was killed while saving it, or the '
        'copy/download is incomplete). Use the previous checkpoint, or '
        'pass another file to --resume / --load-from. '
        f'(Details: {type(exc).__name__}: {_detail(str(exc))})')


def _detail(message: str) -> str:
    """The core of a torch error message, without its generic advice."""
    marker = 'WeightsUnpickler error:'
    if marker in message:
        message = message.split(marker, 1)[1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    detail = lines[0] if lines else message.strip()
    if len(detail) > 160 and '. ' in detail:
        detail = detail.split('. ', 1)[0] + '.'
    return detail


@contextlib.contextmanager
def _translate_errors(name: str) -> Iterator[None]:
    """Turn torch's load failures into Unsafe/CorruptCheckpointError."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if _is_refusal(message):
            raise _unsafe_error(name, message) from None
        raise _corrupt_error(name, exc) from None
    except (UnsafeCheckpointError, CorruptCheckpointError):
        raise
    except RuntimeError as exc:
        message = str(exc)
        for key, offending in _WEIGHTS_ONLY_RUNTIME_ERRORS.items():
            if key in message:
                raise _unsafe_error(name, message, offending) from None
        if any(s in message.lower() for s in _DEVICE_RUNTIME_ERRORS):
            raise
        # The zip reader ("PytorchStreamReader failed ...", "Invalid magic
        # number", "storage has wrong byte size", ...).
        raise _corrupt_error(name, exc) from None
    except _GARBLED_INPUT_ERRORS as exc:
        raise _corrupt_error(name, exc) from None


def safe_torch_load(filename_or_fileobj: FileLike,
                    map_location: MapLocation = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and :data:`SAFE_GLOBALS`.

    Args:
        filename_or_fileobj: A path or a binary file object.
        map_location: Same as for :func:`torch.load`.

    Returns:
        The loaded object (for mmengine checkpoints a dict with ``meta``,
        ``state_dict``, ``message_hub``, ``optimizer``, ...).

    Raises:
        UnsafeCheckpointError: The file needs a global outside the allow-list
            (nothing from it was executed).
        CorruptCheckpointError: The file is truncated or not a checkpoint.
        FileNotFoundError: The path does not exist.
    """
    name = _file_name(filename_or_fileobj)
    with _translate_errors(name), _allow_listed():
        return torch.load(
            filename_or_fileobj, map_location=map_location, weights_only=True)


def load_from_local_safe(filename: str,
                         map_location: MapLocation = None) -> Any:
    """mmengine's ``load_from_local`` with :func:`safe_torch_load`.

    Args:
        filename: Local checkpoint path (``~`` is expanded).
        map_location: Same as for :func:`torch.load`.

    Returns:
        The loaded checkpoint.
    """
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def load_from_http_safe(filename: str,
                        map_location: MapLocation = None,
                        model_dir: str | None = None,
                        progress: bool = os.isatty(0)) -> Any:
    """mmengine's ``load_from_http`` with ``weights_only=True`` loading.

    mmengine downloads through ``torch.hub.load_state_dict_from_url``, which
    defaults to ``weights_only=False`` (arbitrary code execution from a
    downloaded file). Here it is called with ``weights_only=True`` inside
    the :data:`SAFE_GLOBALS` allow-list. As in mmengine, only local rank 0
    downloads in a distributed run; the others load the cached file.

    Args:
        filename: ``http://`` or ``https://`` URL of the checkpoint.
        map_location: Same as for :func:`torch.load`.
        model_dir: Download directory (torch hub's default if None).
        progress: Whether to show a download progress bar.

    Returns:
        The loaded checkpoint.
    """

    def fetch() -> Any:
        with _translate_errors(filename), _allow_listed():
            return torch.hub.load_state_dict_from_url(
                filename,
                model_dir=model_dir,
                map_location=map_location,
                progress=progress,
                weights_only=True)

    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = fetch()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = fetch()
    return checkpoint


def install_safe_checkpoint_loader() -> None:
    """Route mmengine's checkpoint loading through :func:`safe_torch_load`.

    Registers :func:`load_from_local_safe` for local paths (prefix ``''``)
    and :func:`load_from_http_safe` for ``http://`` / ``https://`` in
    mmengine's ``CheckpointLoader`` (``force=True``), and points
    ``mmengine.runner.checkpoint.load_from_http`` (used by the
    ``torchvision://``, ``open-mmlab://`` and ``mmcls://`` schemes) at the
    safe version. ``Runner.resume``, ``Runner.load_checkpoint`` and
    ``load_checkpoint`` all go through ``_load_checkpoint`` ->
    ``CheckpointLoader.load_checkpoint`` and so use these loaders.
    Idempotent.
    """
    # Shim for mmengine 0.10.7 on torch >= 2.6: remove it once mmengine
    # loads checkpoints with weights_only=True and its own allow-list.
    from mmengine.runner import checkpoint as mmengine_checkpoint

    loader = mmengine_checkpoint.CheckpointLoader
    loader.register_scheme('', load_from_local_safe, force=True)
    loader.register_scheme(('http://', 'https://'),
                           load_from_http_safe,
                           force=True)
    mmengine_checkpoint.load_from_http = load_from_http_safe

