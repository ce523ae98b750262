"""Safe checkpoint loading for mmengine 0.10.7 on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine
0.10.7 training checkpoints pickle more than tensors (the message hub's
``HistoryBuffer`` objects, numpy arrays and scalars, ...), so its stock
loaders fail on ``--resume`` and in ``tools/test.py``. The upstream fix,
``weights_only=False``, lets a crafted checkpoint run arbitrary code while it
is being loaded.

This module keeps torch's weights-only unpickler (its allow-list refuses
code) and adds what torch does not check, so that a file is data and
nothing else:

1. The container (torch's zip format), read with :mod:`zipfile`. Before
   anything is read, the sizes the records declare in the zip directory may
   add up to at most :data:`DEFAULT_MAX_EXPANSION` times the file's size
   (environment variable ``MMSAOL_CHECKPOINT_MAX_EXPANSION`` raises it): a
   small file cannot make torch allocate or inflate gigabytes. Every record
   is then read once, whole, through :mod:`zipfile`, which verifies its
   CRC-32 (torch loads a file with a flipped data byte silently), and its
   bytes are handed to torch's unpickler.
2. The pickle, with torch's weights-only unpickler and the allow-list
   :data:`SAFE_GLOBALS`. Its numpy and mmengine entries are stand-ins that
   accept only what numpy and mmengine write: numpy dtypes of booleans,
   integers, floats and complex numbers in numpy's own pickled form (no
   fields, sub-arrays, objects, strings or dates; the pickled dtype state
   is compared with numpy's, never handed to numpy's ``__setstate__``),
   arrays whose byte count fits their shape, scalars, and ``HistoryBuffer``
   states with mmengine's keys and only its own statistics methods.
3. The result: containers nested at most :data:`MAX_NESTING` deep, no
   container inside itself.

The allow-list is only active inside :func:`safe_torch_load`, in the thread
that loads, so other ``torch.load`` users in the process are not affected.

This shim is for mmengine 0.10.7 on torch >= 2.6 and can go when mmengine
ships allow-listed (``weights_only=True``) checkpoint loading itself and
torch verifies record CRCs.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import re
import reprlib
import struct
import threading
import urllib.parse
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import IO, Any, Union

import numpy as np
import torch
import torch._weights_only_unpickler as weights_only_unpickler
import torch.hub
import torch.serialization
from mmengine.dist import get_dist_info
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'DEFAULT_MAX_EXPANSION', 'MAX_EXPANSION_ENV', 'MAX_NESTING',
    'SAFE_GLOBALS', 'CorruptCheckpointError', 'UnsafeCheckpointError',
    'UnusableWeightsError', 'check_container', 'check_weights',
    'install_safe_checkpoint_loader', 'load_from_http_safe',
    'load_from_local_safe', 'loaded_from', 'max_expansion',
    'safe_torch_load', 'state_dict_of', 'weight_problem'
]

FileLike = Union[str, 'os.PathLike[str]', IO[bytes]]
MapLocation = Any

#: Environment variable: how many times its file size a checkpoint's
#: records may declare in all (a number >= 1; ``inf`` for no bound).
MAX_EXPANSION_ENV = 'MMSAOL_CHECKPOINT_MAX_EXPANSION'
#: The bound when :data:`MAX_EXPANSION_ENV` is not set. torch stores
#: records uncompressed (about 1x); a re-zipped (deflated) checkpoint of
#: mostly-zero tensors can need more.
DEFAULT_MAX_EXPANSION = 16.0
#: Deepest nesting of dicts, lists and tuples a checkpoint may hold
#: (mmengine checkpoints: under 10). Deeper data would overflow the
#: recursion of ``copy.deepcopy`` in ``Runner.resume``.
MAX_NESTING = 100
#: numpy dtype kinds a checkpoint may hold: booleans, signed and unsigned
#: integers, floats, complex numbers (mmengine writes float64 and int64).
NUMPY_KINDS = 'biufc'

# ``HistoryBuffer`` pickles its registered statistics methods by reference.
# torch.save uses pickle protocol 2, which writes a method such as
# ``HistoryBuffer.mean`` as ``getattr(HistoryBuffer, 'mean')``. These are the
# methods ``HistoryBuffer._set_default_statistics`` registers in
# ``HistoryBuffer._statistics_methods`` (mmengine 0.10.7).
HISTORY_BUFFER_METHODS: frozenset[str] = frozenset(
    ('min', 'max', 'current', 'mean'))
# The instance attributes of a HistoryBuffer (its pickled state), mmengine
# 0.10.7; ``statistics_methods`` is added by ``HistoryBuffer.__getstate__``.
_HISTORY_BUFFER_STATE = ('max_length', '_log_history', '_count_history')


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs something outside the allow-list to be loaded.

    The file was *not* executed: the restricted unpickler stopped before
    calling or building the offending object.
    """


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, damaged or not a checkpoint."""


class UnusableWeightsError(ValueError):
    """A checkpoint loads, but its weights cannot stand for the model's:
    not a state dict of tensors, or values that are not finite, dense
    floating-point numbers where the model has floating-point weights."""


class _Refused(Exception):
    """Raised while loading: the file asks for something not allowed.

    Not a ``pickle.UnpicklingError`` (``torch.load`` re-raises those as a
    new exception); :func:`_translate_errors` turns it into
    :class:`UnsafeCheckpointError` naming the file.
    """

    def __init__(self, offending: str, detail: str) -> None:
        super().__init__(detail)
        self.offending = offending


class _Malformed(Exception):
    """Raised while loading: the file holds what numpy, mmengine or torch
    never write (becomes :class:`CorruptCheckpointError`)."""


class _TooLarge(Exception):
    """The records declare more bytes than the bound allows."""

    def __init__(self, declared: int, size: int, bound: float) -> None:
        super().__init__(declared, size, bound)
        self.declared = declared
        self.size = size
        self.bound = bound


# --- stand-ins for the allow-listed globals -----------------------------


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling.

    It only answers ``getattr(HistoryBuffer, <statistics method>)``, which is
    how pickle protocol 2 refers to ``HistoryBuffer``'s statistics methods.
    Anything else is refused, so the checkpoint cannot use attribute access
    to reach other objects (e.g. ``__globals__`` or ``os.system``).
    """
    # The pickle's HistoryBuffer is the stand-in _LoadedHistoryBuffer.
    if (obj is HistoryBuffer or obj is _LoadedHistoryBuffer) and \
            name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise _Refused(
        f'builtins.getattr({_describe(obj)}, {_short(name)})',
        'only the statistics methods of mmengine HistoryBuffer '
        f'({", ".join(sorted(HISTORY_BUFFER_METHODS))}) may be looked up '
        'with getattr.')


def _short(value: Any) -> str:
    """A repr of data from the file, cut short (size and nesting)."""
    return reprlib.repr(value)


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


class _ArgumentOnly:
    """A global that may only be an argument: ``numpy.ndarray`` in numpy's
    ``_reconstruct(numpy.ndarray, (0,), b'b')``. Calling it is refused."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        raise _Refused(f'{self.name}(...)',
                       f'{self.name} may only be an argument of numpy\'s '
                       '_reconstruct.')

    def __repr__(self) -> str:
        return self.name


_NDARRAY = _ArgumentOnly('numpy.ndarray')


class _DType:
    """Stand-in for ``numpy.dtype`` while unpickling.

    numpy pickles a dtype as ``numpy.dtype(spec, False, True)`` followed by
    its state (byte order, fields, item size, flags). numpy's
    ``dtype.__setstate__`` trusts that state: a dtype of bytes can be given
    a field of Python objects with forged flags, and an array of it then
    holds forged pointers. Here only plain boolean / integer / float /
    complex dtypes (:data:`NUMPY_KINDS`) are built, and the state must be
    exactly the one numpy writes for the dtype in that byte order; it is
    compared, never applied. The built dtype is :attr:`dtype`.
    """

    __hash__ = None  # type: ignore[assignment]  # never a dict key

    def __init__(self, spec: Any, align: Any = False,
                 copy: Any = True) -> None:
        offending = f'numpy dtype {_short(spec)}' if isinstance(
            spec, str) else f'numpy dtype from a {type(spec).__name__}'
        if not isinstance(spec, str) or type(align) is not bool or \
                type(copy) is not bool:
            raise _Refused(offending, 'numpy dtypes are pickled as '
                           'numpy.dtype(<type code>, <bool>, <bool>).')
        try:
            dtype = np.dtype(spec)
        except (TypeError, ValueError, SyntaxError) as exc:
            raise _Refused(offending, str(exc)) from None
        if dtype.kind not in NUMPY_KINDS or dtype.fields is not None or \
                dtype.subdtype is not None or _dtype_args(dtype) != spec:
            raise _Refused(
                offending,
                'only numpy dtypes of booleans, integers, floats and '
                'complex numbers are allowed (no objects, fields, '
                'sub-arrays, strings or dates).')
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 \
            else None
        dtype = self.dtype.newbyteorder(order) if order in ('<', '>') \
            else self.dtype
        if dtype.__reduce__()[2] != state:
            raise _Refused(
                f'a numpy {self.dtype} dtype with the state {_short(state)}',
                f'numpy writes the state {dtype.__reduce__()[2]!r} for it; '
                'other states (fields, objects, flags) are not allowed.')
        self.dtype = dtype


def _dtype_args(dtype: np.dtype) -> Any:
    """The type code numpy pickles ``dtype`` with (``'f8'``, ``'b1'``)."""
    return dtype.__reduce__()[1][0]


class _Array:
    """Stand-in for numpy's ``_reconstruct`` while unpickling.

    numpy pickles an array as ``_reconstruct(numpy.ndarray, (0,), b'b')``
    followed by the state ``(1, shape, dtype, is_fortran, data)``. The array
    is only built from that state, with a :class:`_DType`-checked dtype and
    exactly ``prod(shape) * itemsize`` bytes of data (a shape cannot make
    numpy allocate more than the file holds). The built array is
    :attr:`array`.
    """

    __hash__ = None  # type: ignore[assignment]  # never a dict key

    def __init__(self, cls: Any, shape: Any, typecode: Any) -> None:
        if cls is not _NDARRAY or shape != (0, ) or typecode != b'b':
            raise _Refused(
                f'numpy._reconstruct({_short(cls)}, {_short(shape)}, '
                f'{_short(typecode)})', 'numpy pickles arrays as '
                "_reconstruct(numpy.ndarray, (0,), b'b').")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (type(state) is tuple and len(state) == 5):
            raise _Malformed('a numpy array state that is not the 5-tuple '
                             'numpy writes')
        version, shape, dtype, fortran, data = state
        if type(dtype) is not _DType:
            raise _Refused(f'a numpy array of {_describe(dtype)}',
                           'numpy arrays must have a numpy dtype.')
        if version != 1 or type(fortran) is not bool or \
                type(data) is not bytes or type(shape) is not tuple or \
                len(shape) > 64 or \
                not all(type(n) is int and n >= 0 for n in shape):
            raise _Malformed('a numpy array state that numpy does not write')
        if math.prod(shape) * dtype.dtype.itemsize != len(data):
            raise _Malformed(
                f'a numpy {dtype.dtype} array of shape {shape} with '
                f'{len(data)} bytes of data')
        array = np.ndarray.__new__(np.ndarray, (0, ), 'b')
        array.__setstate__((1, shape, dtype.dtype, fortran, data))
        self.array = array


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Stand-in for numpy's ``scalar(dtype, data)`` while unpickling."""
    if type(dtype) is not _DType:
        raise _Refused(f'a numpy scalar of {_describe(dtype)}',
                       'numpy scalars must have a numpy dtype.')
    if type(data) is not bytes or len(data) != dtype.dtype.itemsize:
        raise _Malformed(f'a numpy {dtype.dtype} scalar whose data is not '
                         f'{dtype.dtype.itemsize} bytes')
    return _numpy_multiarray().scalar(dtype.dtype, data)


class _LoadedHistoryBuffer(HistoryBuffer):
    """Stand-in for mmengine's ``HistoryBuffer`` while unpickling.

    A HistoryBuffer is pickled as a new object plus its state (its
    ``__dict__``); the state is checked (mmengine's keys, 1-d numeric
    arrays, a positive ``max_length``, only HistoryBuffer's own statistics
    methods under their own names, which ``HistoryBuffer.__setstate__``
    merges into a dict shared by the whole process), then the object becomes
    a plain ``HistoryBuffer``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _Refused('mmengine HistoryBuffer(...)',
                       'a HistoryBuffer is pickled as its state, never '
                       'as a call.')

    def __setstate__(self, state: Any) -> None:
        _check_history_buffer_state(state)
        self.__class__ = HistoryBuffer
        HistoryBuffer.__setstate__(self, state)


def _check_history_buffer_state(state: Any) -> None:
    """Check a pickled HistoryBuffer state; swap in the built arrays."""
    if type(state) is not dict:
        raise _Malformed(f'a HistoryBuffer state that is a '
                         f'{type(state).__name__}, not a dict')
    keys = set(state)
    allowed = {*_HISTORY_BUFFER_STATE, 'statistics_methods'}
    if not set(_HISTORY_BUFFER_STATE) <= keys <= allowed:
        raise _Malformed(f'a HistoryBuffer state with the keys '
                         f'{_short(sorted(map(str, keys)))}; mmengine '
                         f'writes {sorted(allowed)}')
    length = state['max_length']
    if type(length) is not int or length <= 0:
        raise _Malformed(f'a HistoryBuffer max_length of {_short(length)}')
    for key in ('_log_history', '_count_history'):
        array = state[key]
        if type(array) is not _Array or array.array is None or \
                array.array.ndim != 1:
            raise _Malformed(f'a HistoryBuffer {key} that is not a 1-d '
                             'numpy array')
        state[key] = array.array
    methods = state.get('statistics_methods', {})
    if type(methods) is not dict:
        raise _Malformed('HistoryBuffer statistics methods that are not a '
                         'dict')
    bad = sorted(str(name) for name, fn in methods.items()
                 if name not in HISTORY_BUFFER_METHODS
                 or fn is not getattr(HistoryBuffer, name))
    if bad:
        raise _Refused(
            f'HistoryBuffer statistics methods {_short(bad)}',
            "a checkpoint may only hold HistoryBuffer's own statistics "
            'methods under their own names.')


def _numpy_multiarray() -> Any:
    """numpy's ``multiarray`` module (``numpy._core`` in numpy 2)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _build_safe_globals() -> list[Any]:
    safe: list[Any] = [
        # The message hub's log buffers.
        (_LoadedHistoryBuffer,
         'mmengine.logging.history_buffer.HistoryBuffer'),
        # HistoryBuffer's statistics methods are pickled as
        # getattr(HistoryBuffer, 'mean') etc.; plain getattr would open
        # attribute access on anything, so a restricted stand-in answers.
        (_history_buffer_getattr, 'builtins.getattr'),
        # numpy arrays, dtypes and scalars (HistoryBuffer data, runtime
        # info such as the ETA).
        (_NDARRAY, 'numpy.ndarray'),
        (_DType, 'numpy.dtype'),
    ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        # numpy 2 writes numpy._core.*, numpy 1.x wrote numpy.core.*.
        safe.append((_Array, f'{module}._reconstruct'))
        safe.append((_numpy_scalar, f'{module}.scalar'))
    # collections.OrderedDict, collections.Counter and _codecs.encode (used
    # for bytes) are allowed by torch's weights_only unpickler by default.
    return safe


#: Globals allowed, on top of torch's weights_only defaults, while loading a
#: checkpoint, as ``(stand-in, 'name.in.the.pickle')`` pairs: every one is
#: a checking stand-in for the numpy / mmengine object of that name.
SAFE_GLOBALS: list[Any] = _build_safe_globals()
# The stand-ins by the name they answer to in a pickle.
_STAND_INS = {name: stand_in for stand_in, name in SAFE_GLOBALS}
# Per thread: how many safe_torch_load calls are running (the allow-list is
# active while it is > 0).
_SCOPE = threading.local()
# Per thread: (id, keys, file name) of the object safe_torch_load returned
# last (the keys guard against a new object at a reused address).
_LAST_LOADED = threading.local()


def loaded_from(checkpoint: Any) -> str | None:
    """The file :func:`safe_torch_load` read ``checkpoint`` from.

    mmengine's ``after_load_checkpoint`` hooks get the loaded dict but not
    its file name; the loader remembers the last object it returned in each
    thread (mmengine calls the hooks right after loading).

    Args:
        checkpoint: An object :func:`safe_torch_load` returned.

    Returns:
        str | None: Its file name, or None if it is not the last object
        returned in this thread.
    """
    last = getattr(_LAST_LOADED, 'value', None)
    if last is None or last[:2] != (id(checkpoint), _keys(checkpoint)):
        return None
    return last[2]


def _keys(value: Any) -> tuple:
    return tuple(value) if isinstance(value, dict) else ()


def _user_allowed_globals(stock: Any) -> Any:
    """torch's lookup of the user allow-list, plus :data:`SAFE_GLOBALS`
    while :func:`safe_torch_load` runs in the calling thread.

    The stand-ins win over entries others added under the same names
    (e.g. ``HistoryBuffer`` itself), which would bypass their checks.
    """

    def user_allowed_globals() -> dict[str, Any]:
        found = stock()
        if getattr(_SCOPE, 'depth', 0):
            found.update(_STAND_INS)
        return found

    user_allowed_globals.stock = stock  # type: ignore[attr-defined]
    return user_allowed_globals


@contextlib.contextmanager
def _allow_listed() -> Iterator[None]:
    """Let torch's weights-only unpickler use :data:`SAFE_GLOBALS` in this
    thread until the block ends (reentrant).

    torch keeps its allow-list (``add_safe_globals``, ``safe_globals``) in
    one process-wide set, so adding ours there would let every other
    thread's ``torch.load`` use it meanwhile. Instead its lookup function is
    wrapped once; the wrapper adds ours only in a thread inside this block,
    and torch's own list is never changed.
    """
    lookup = weights_only_unpickler._get_user_allowed_globals
    if not hasattr(lookup, 'stock'):
        weights_only_unpickler._get_user_allowed_globals = \
            _user_allowed_globals(lookup)
    _SCOPE.depth = getattr(_SCOPE, 'depth', 0) + 1
    try:
        yield
    finally:
        _SCOPE.depth -= 1


# --- the zip container ----------------------------------------------------


def max_expansion() -> float:
    """How many times its file size a checkpoint's records may declare.

    Returns:
        float: :data:`MAX_EXPANSION_ENV` if set, else
        :data:`DEFAULT_MAX_EXPANSION`.
    """
    value = os.environ.get(MAX_EXPANSION_ENV, '').strip()
    if not value:
        return DEFAULT_MAX_EXPANSION
    try:
        bound = float(value)
    except ValueError:
        bound = math.nan
    if not bound >= 1:
        raise ValueError(
            f'{MAX_EXPANSION_ENV}={value!r} must be a number >= 1 (how many '
            'times its file size a checkpoint may declare, e.g. 64, or inf '
            f'for no bound); unset it for the default '
            f'{DEFAULT_MAX_EXPANSION:g}.')
    return bound



def _checked_archive(file: IO[bytes], bound: float) -> zipfile.ZipFile:
    """The zip archive of a checkpoint, its directory checked before any
    record is read.

    Raises:
        _Malformed: not a readable zip archive, or a record torch cannot
            read (compression other than stored / deflated, encrypted).
        _TooLarge: the declared sizes add up to more than ``bound``
            times the file size.
    """
    size = file.seek(0, io.SEEK_END)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
            OSError) as exc:
        raise _Malformed(f'not a readable zip archive ({exc})') from None
    infos = archive.infolist()
    declared = sum(info.file_size for info in infos)
    if declared > bound * max(size, 1):
        raise _TooLarge(declared, size, bound)
    for info in infos:
        stored = info.compress_type == zipfile.ZIP_STORED
        if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
            raise _Malformed(f'record {info.filename!r} uses compression '
                             f'method {info.compress_type}, which torch '
                             'never writes')
        if info.flag_bits & 0x1:
            raise _Malformed(f'record {info.filename!r} is encrypted')
        if stored and info.compress_size != info.file_size:
            raise _Malformed(f'record {info.filename!r} is stored with '
                             f'{info.compress_size} bytes but declares '
                             f'{info.file_size}')
    return archive


# Bytes of tensor data copied at a time (zipfile checks the CRC-32 of each).
_CHUNK = 1 << 20


class _Records:
    """The part of torch's zip reader that ``torch.serialization._load``
    uses, over a :class:`zipfile.ZipFile`.

    Each record is read once, whole, through :mod:`zipfile`, which verifies
    its CRC-32 at the end of the read (and inflates a deflated record only
    up to its declared size); tensor data goes straight into the storage.
    :meth:`read_rest` reads the records torch did not ask for.

    Args:
        archive (zipfile.ZipFile): The checked archive
            (:func:`_checked_archive`).
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        names = archive.namelist()
        # torch names every record '<archive name>/<record>'.
        self.prefix = names[0].split('/', 1)[0] + '/' if names else ''
        self.unread = dict.fromkeys(names)

    def has_record(self, name: str) -> bool:
        return self.prefix + name in self.archive.NameToInfo

    def get_record(self, name: str) -> bytes:
        return self.read(self.prefix + name)

    def get_storage_from_record(self, name: str, nbytes: int,
                                _: Any) -> torch.Tensor:
        storage = torch.empty(nbytes, dtype=torch.uint8)
        self.read(self.prefix + name, storage.numpy())
        return storage

    def read(self, full: str, into: np.ndarray | None = None) -> bytes:
        """The data of the record ``full``, CRC-checked; written into the
        byte array ``into`` instead if given (in chunks: no second copy
        of the record in memory)."""
        self.unread.pop(full, None)
        info = self.archive.NameToInfo.get(full)
        if info is None:
            raise _Malformed(f'record {full!r} is missing')
        if into is not None and len(into) != info.file_size:
            raise _Malformed(f'record {full!r} holds {info.file_size} bytes '
                             f'where its tensor needs {len(into)}')
        try:
            with self.archive.open(info) as stream:
                if into is None:
                    data = stream.read()
                    count = len(data)
                else:
                    data, count = b'', 0
                    while chunk := stream.read(_CHUNK):
                        into[count:count + len(chunk)] = np.frombuffer(
                            chunk, np.uint8)
                        count += len(chunk)
        except zipfile.BadZipFile as exc:
            if 'CRC' in str(exc):
                raise _Malformed(
                    f'record {full!r} fails its CRC-32 check (the bytes '
                    'changed since it was written)') from None
            raise _Malformed(f'record {full!r} is damaged ({exc})') from None
        except (EOFError, zlib.error) as exc:
            raise _Malformed(f'record {full!r} is truncated or does not '
                             f'inflate ({exc})') from None
        if count != info.file_size:
            raise _Malformed(f'record {full!r} holds {count} bytes, not its '
                             f'declared {info.file_size}')
        return data

    def serialization_id(self) -> str:
        return ''

    def read_rest(self) -> None:
        """Read (and so CRC-check) the records torch did not read."""
        for full in list(self.unread):
            self.read(full)


# --- the loaded object ----------------------------------------------------

_DICTS = (dict, OrderedDict, Counter)


def _finish(result: Any) -> Any:
    """Swap the numpy stand-ins for what they built and check the nesting.

    Raises:
        _Malformed: an unbuilt stand-in, containers nested deeper than
            :data:`MAX_NESTING`, or a container inside itself.
    """
    # id -> (the node, what replaces it); the node is kept so that its id
    # is not reused while walking.
    done: dict[int, tuple[Any, Any]] = {}
    open_: set[int] = set()

    def visit(node: Any, depth: int) -> Any:
        kind = type(node)
        if kind is _DType:
            return node.dtype
        if kind is _Array:
            if node.array is None:
                raise _Malformed('a numpy array without its data')
            return node.array
        if kind is _LoadedHistoryBuffer:
            raise _Malformed('a HistoryBuffer without its state')
        attributes = getattr(node, '__dict__', None) \
            if kind in (OrderedDict, Counter) or \
            isinstance(node, torch.Tensor) else None
        if kind not in _DICTS and kind is not list and kind is not tuple \
                and not attributes:
            return node
        key = id(node)
        if key in done:
            return done[key][1]
        if key in open_:
            raise _Malformed(f'a {kind.__name__} that contains itself')
        if depth >= MAX_NESTING:
            raise _Malformed(f'data nested more than {MAX_NESTING} levels '
                             'deep')
        open_.add(key)
        original = node
        if kind is tuple:
            items = [visit(item, depth + 1) for item in node]
            if any(new is not old for new, old in zip(items, node)):
                node = tuple(items)
        elif kind is list:
            for i, item in enumerate(node):
                node[i] = visit(item, depth + 1)
        elif kind in _DICTS:
            for name in list(node):
                node[name] = visit(node[name], depth + 1)
        for name in list(attributes or ()):
            attributes[name] = visit(attributes[name], depth + 1)
        open_.discard(key)
        done[key] = (original, node)
        return node

    return visit(result, 0)


# --- errors ---------------------------------------------------------------


def _file_name(filename_or_fileobj: FileLike) -> str:
    if isinstance(filename_or_fileobj, (str, os.PathLike)):
        return os.fspath(filename_or_fileobj)
    name = getattr(filename_or_fileobj, 'name', None)
    if isinstance(name, str):
        return name
    return f'<{type(filename_or_fileobj).__name__}>'


# Messages of torch's weights_only unpickler that mean "this object is not
# allowed", as opposed to "this is not a pickle". The first group, where
# there is one, names the offending global.
_REFUSAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
    re.compile(r'Trying to call reduce for unrecognized function (.+)'),
    re.compile(r'Can only create new object for .* but got (.+)'),
    re.compile(r'Can only build .* but got (.+)'),
    re.compile(r'(\S+) must be imported to load'),
    re.compile(r'Can only (?:append|SETITEMS?) '),
    re.compile(r'persistent_load|persistent id'),
)
# RuntimeErrors torch.load raises when weights_only=True cannot load a
# legacy file that plain pickle could.
_WEIGHTS_ONLY_RUNTIME_ERRORS = {
    'legacy .tar format': 'the legacy .tar format (torch < 0.4)',
    'weights_only': 'an object outside the allow-list',
    'Weights only load failed': 'an object outside the allow-list',
}
# RuntimeErrors that are about the target device / map_location rather than
# the file; they are passed through unchanged.
_DEVICE_RUNTIME_ERRORS = ('cuda', 'device', 'restore data location')
# What torch's zip reader, legacy loader and unpickler raise on short or
# garbled input (besides RuntimeErrors and UnpicklingErrors); TypeError and
# AttributeError come from allowed callables given the wrong arguments.
_GARBLED_INPUT_ERRORS = (EOFError, zipfile.BadZipFile, IndexError, KeyError,
                         ValueError, AssertionError, struct.error,
                         OverflowError, TypeError, AttributeError)


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


def _too_large_error(name: str, exc: _TooLarge) -> UnsafeCheckpointError:
    ratio = exc.declared / max(exc.size, 1)
    return UnsafeCheckpointError(
        f'Refused to load checkpoint {name!r}: its records declare '
        f'{_bytes(exc.declared)}, {ratio:.0f} times the file\'s size of '
        f'{_bytes(exc.size)}, and mmsaol allows at most {exc.bound:g} '
        f'times ({MAX_EXPANSION_ENV}) so that a small file cannot make it '
        'allocate or inflate gigabytes; nothing was inflated. If you trust '
        f'the file, set {MAX_EXPANSION_ENV}={math.ceil(ratio)} or more.')


def _bytes(count: int) -> str:
    """``count`` bytes in words: ``'512 bytes'``, ``'16.0 MiB'``."""
    power = min(max(count.bit_length() - 1, 0) // 10, 3)
    return f'{count} bytes' if not power else \
        f"{count / 1024 ** power:.1f} {('KiB', 'MiB', 'GiB')[power - 1]}"


def _corrupt_error(name: str, exc: BaseException) -> CorruptCheckpointError:
    detail = str(exc) if isinstance(exc, _Malformed) else \
        f'{type(exc).__name__}: {_detail(str(exc))}'
    return CorruptCheckpointError(
        f'Cannot read checkpoint {name!r}: the file is truncated, damaged or '
        'not a checkpoint (e.g. the run was killed while saving it, or the '
        'copy/download is incomplete). Use the previous checkpoint, or '
        'pass another file to --resume / --load-from. '
        f'(Details: {detail})')


def _memory_error(name: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f'Cannot read checkpoint {name!r}: loading it needs more memory '
        'than is available. A checkpoint of a model this machine can train '
        'fits; a damaged or crafted file can declare any size. Use another '
        'checkpoint, or load this one on a machine with more memory.')


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
    """Turn load failures into Unsafe/CorruptCheckpointError."""
    try:
        yield
    except (UnsafeCheckpointError, CorruptCheckpointError):
        raise
    except _Refused as exc:
        raise _unsafe_error(name, str(exc), exc.offending) from None
    except _TooLarge as exc:
        raise _too_large_error(name, exc) from None
    except _Malformed as exc:
        raise _corrupt_error(name, exc) from None
    except MemoryError:
        raise _memory_error(name) from None
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if _is_refusal(message):
            raise _unsafe_error(name, message) from None
        raise _corrupt_error(name, exc) from None
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


# --- the weights ---------------------------------------------------------


def _kind(dtype: torch.dtype) -> str:
    """The class of a dtype: what copying a value into it preserves."""
    if dtype.is_floating_point:
        return 'floating-point'
    if dtype.is_complex:
        return 'complex'
    return 'boolean' if dtype == torch.bool else 'integer'


def weight_problem(value: Any, reference: torch.Tensor) -> str | None:
    """Why a checkpoint entry cannot stand for the model's ``reference``
    tensor of the same name, or None.

    mmengine copies whatever has the right shape: a numpy array, a tensor
    on the meta device (no values), a sparse tensor, int8 codes into
    float32 weights, NaN.

    Args:
        value: The checkpoint's entry (untrusted).
        reference (torch.Tensor): The model's tensor of that name.

    Returns:
        str | None: e.g. ``'holds 3 of 8 values that are NaN or inf'``.
    """
    if not isinstance(value, torch.Tensor):
        kind = type(value)
        return f'is a {kind.__module__}.{kind.__qualname__}, not a tensor'
    if value.layout != torch.strided:
        return f'is a {value.layout} tensor, not a dense one'
    if value.is_meta:
        return 'is on the meta device (it holds no values)'
    if _kind(value.dtype) != _kind(reference.dtype):
        return (f'is {value.dtype} ({_kind(value.dtype)}) where the model '
                f'has {reference.dtype} ({_kind(reference.dtype)})')
    if value.is_floating_point() or value.is_complex():
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            return f'holds {bad} of {value.numel()} values that are NaN or inf'
    return None


def state_dict_of(checkpoint: Any, name: str | None = None) -> dict:
    """The state dict of a loaded checkpoint (its ``state_dict``, or the
    checkpoint itself), checked to map names to values.

    Args:
        checkpoint: What the safe loader returned.
        name (str, optional): The file, for the message.

    Returns:
        dict: The state dict.

    Raises:
        UnusableWeightsError: The checkpoint or its ``state_dict`` is no
            dict, or has a key that is not a string.
    """
    where = f'The checkpoint {name!r}' if name else 'The checkpoint'
    fix = ('Re-save the trained model with torch.save({"state_dict": '
           'model.state_dict()}, path), or use another checkpoint.')
    if not isinstance(checkpoint, dict):
        raise UnusableWeightsError(
            f'{where} holds a {type(checkpoint).__name__}, not a dict of '
            f'weights. {fix}')
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise UnusableWeightsError(
            f"{where} has a 'state_dict' that is a {type(state).__name__}, "
            f'not a dict of weights. {fix}')
    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None:
        raise UnusableWeightsError(
            f'{where} has a state_dict key {_short(odd)} that is a '
            f'{type(odd).__name__}, not a parameter name. {fix}')
    return state


def check_weights(state: dict, wanted: dict, name: str | None = None
                  ) -> None:
    """Refuse checkpoint entries that fit a model tensor by name (after
    mmengine's ``module.`` prefix removal) but not by content
    (:func:`weight_problem`).

    Args:
        state (dict): The checkpoint's state dict (:func:`state_dict_of`).
        wanted (dict): The model's ``state_dict()``.
        name (str, optional): The file, for the message.

    Raises:
        UnusableWeightsError: Naming the file and the first such entry.
    """
    given = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    bad = [(key, problem) for key, reference in wanted.items()
           if key in given and isinstance(reference, torch.Tensor)
           for problem in [weight_problem(given[key], reference)] if problem]
    if not bad:
        return
    where = f'The checkpoint {name!r}' if name else 'The checkpoint'
    key, problem = bad[0]
    more = f' ({len(bad) - 1} more entries too)' if len(bad) > 1 else ''
    raise UnusableWeightsError(
        f'{where} does not hold usable values: {key} {problem}{more}. '
        'mmengine would copy it into the model as it is. Re-save the '
        'trained model with torch.save({"state_dict": '
        'model.state_dict()}, path) (tensors, float weights), or use '
        'another checkpoint.')


def _checked_load_to_model(stock: Any) -> Any:
    """mmengine's ``_load_checkpoint_to_model`` with :func:`check_weights`
    first (every model built from a file: ``load_checkpoint``, mmpretrain's
    ``get_model`` / ``inference_model``, ``Runner.load_checkpoint``)."""

    def load_to_model(model, checkpoint, strict=False, logger=None,
                      revise_keys=[(r'^module\.', '')]):
        name = loaded_from(checkpoint)
        check_weights(state_dict_of(checkpoint, name), model.state_dict(),
                      name)
        return stock(model, checkpoint, strict, logger, revise_keys)

    load_to_model._checks_weights = True  # type: ignore[attr-defined]
    load_to_model.__wrapped__ = stock  # type: ignore[attr-defined]
    return load_to_model


# --- loaders --------------------------------------------------------------


def safe_torch_load(filename_or_fileobj: FileLike,
                    map_location: MapLocation = None) -> Any:
    """``torch.load`` with ``weights_only=True``, checked records and
    :data:`SAFE_GLOBALS`.

    Args:
        filename_or_fileobj: A path or a seekable binary file object.
        map_location: Same as for :func:`torch.load`.

    Returns:
        The loaded object (for mmengine checkpoints a dict with ``meta``,
        ``state_dict``, ``message_hub``, ``optimizer``, ...).

    Raises:
        UnsafeCheckpointError: The file needs a global or numpy type outside
            the allow-list (nothing from it was executed), or its records
            declare more than ``MMSAOL_CHECKPOINT_MAX_EXPANSION`` times its
            size.
        CorruptCheckpointError: The file is truncated, fails a CRC-32 check,
            or holds what torch, numpy or mmengine never write.
        FileNotFoundError: The path does not exist.
    """
    name = _file_name(filename_or_fileobj)
    bound = max_expansion()
    _check_is_file(filename_or_fileobj, name)
    with contextlib.ExitStack() as stack:
        if isinstance(filename_or_fileobj, (str, os.PathLike)):
            file = stack.enter_context(open(filename_or_fileobj, 'rb'))
        else:
            file = filename_or_fileobj
        stack.enter_context(_translate_errors(name))
        stack.enter_context(_allow_listed())
        start = file.tell()
        if file.read(4) == b'PK\x03\x04':
            records = _Records(_checked_archive(file, bound))
            result = torch.serialization._load(
                records, map_location, weights_only_unpickler,
                weights_only=True, encoding='utf-8')
            records.read_rest()
        else:  # torch's legacy format (torch < 1.6): no records to check
            file.seek(start)
            result = torch.load(file, map_location=map_location,
                                weights_only=True, mmap=False)
        result = _finish(result)
    _LAST_LOADED.value = (id(result), _keys(result), name)
    return result


def _check_is_file(filename_or_fileobj: FileLike, name: str) -> None:
    """Refuse a path that names a directory (``open`` would raise
    ``IsADirectoryError``)."""
    if isinstance(filename_or_fileobj, (str, os.PathLike)) and \
            os.path.isdir(filename_or_fileobj):
        raise CorruptCheckpointError(
            f'Cannot read checkpoint {name!r}: it is a directory, not a '
            'checkpoint file; pass the .pth file itself.')


def check_container(path: str) -> None:
    """Check a checkpoint's zip container without reading its records:
    readable central directory, records torch can read, declared sizes
    within :func:`max_expansion` times the file size. Cheap (reads the
    directory only), so a zip bomb is refused at once.

    Args:
        path (str): The checkpoint file (torch's zip format; other files
            pass).

    Raises:
        UnsafeCheckpointError: The records declare too many bytes.
        CorruptCheckpointError: The container is damaged.
    """
    _check_is_file(path, path)
    with _translate_errors(path), open(path, 'rb') as file:
        if file.read(4) == b'PK\x03\x04':
            _checked_archive(file, max_expansion())


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
    _check_is_file(filename, filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def _download(url: str, model_dir: str | None, progress: bool) -> str:
    """``torch.hub.load_state_dict_from_url``'s download step: the cached
    file ``model_dir/<last part of the URL>``, downloaded if missing."""
    model_dir = model_dir or os.path.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir,
                          os.path.basename(urllib.parse.urlparse(url).path))
    if not os.path.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return cached


def load_from_http_safe(filename: str,
                        map_location: MapLocation = None,
                        model_dir: str | None = None,
                        progress: bool = os.isatty(0)) -> Any:
    """mmengine's ``load_from_http``, loading with :func:`safe_torch_load`.

    mmengine downloads through ``torch.hub.load_state_dict_from_url``, which
    defaults to ``weights_only=False`` (arbitrary code execution from a
    downloaded file). Here the file is downloaded into the same cache
    (``model_dir``, torch hub's ``checkpoints`` folder by default) and
    loaded with :func:`safe_torch_load`. As in mmengine, only rank 0
    downloads in a distributed run; the others load the cached file.

    Args:
        filename: ``http://`` or ``https://`` URL of the checkpoint.
        map_location: Same as for :func:`torch.load`.
        model_dir: Download directory (torch hub's default if None).
        progress: Whether to show a download progress bar.

    Returns:
        The loaded checkpoint.
    """
    rank, world_size = get_dist_info()
    cached = None
    if rank == 0:
        cached = _download(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = _download(filename, model_dir, progress)
    return safe_torch_load(cached, map_location=map_location)


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
    # Weight values are checked wherever a model is built from a file
    # (mmengine's runner imported the function by name).
    from mmengine.runner import runner as mmengine_runner
    for module in (mmengine_checkpoint, mmengine_runner):
        stock = module._load_checkpoint_to_model
        if not getattr(stock, '_checks_weights', False):
            module._load_checkpoint_to_model = _checked_load_to_model(stock)
