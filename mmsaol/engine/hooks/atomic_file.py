"""Atomic local file writes, and an mmengine file backend that uses them.

A file written with :func:`atomic_write` is either absent, its previous
version, or complete: the bytes go to a temporary file in the same
directory, which is flushed, ``fsync``-ed and renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the directory is
``fsync``-ed so that the rename itself survives a power loss. A process
killed mid-write leaves at most a temporary file (:func:`is_temp_file`),
which no reader ever takes for the real one.

mmengine 0.10.7's ``LocalBackend.put`` / ``put_text`` open the target itself
with ``'wb'`` / ``'w'`` and write into it, so a run killed while saving a
checkpoint leaves a truncated file under the final name.
:class:`AtomicLocalBackend` is that backend with atomic writes, registered
as ``'atomic_local'`` (``backend_args=dict(backend='atomic_local')``); it
does not replace mmengine's default backend for local paths.
"""
from __future__ import annotations

import contextlib
import errno
import os
import os.path as osp
import re
import secrets
from pathlib import Path
from typing import Iterator, Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'atomic_path', 'atomic_write',
           'is_temp_file']

PathLike = Union[str, Path]

#: Temporary files are named ``.<target name>.<pid>.<8 hex digits>.tmp``.
_TEMP_NAME = re.compile(r'^\..+\.\d+\.[0-9a-f]{8}\.tmp$')


def is_temp_file(name: str) -> bool:
    """Whether a file name (no directory) is an :func:`atomic_write`
    temporary file, i.e. the leftover of a write that never finished."""
    return bool(_TEMP_NAME.match(name))


def _fsync_dir(dirname: str) -> None:
    """Persist a directory entry change (a rename); a no-op where
    directories cannot be opened (Windows)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not fsync directories
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(filepath: PathLike) -> Iterator[str]:
    """A temporary path in ``filepath``'s folder to write the file under;
    on success it is flushed to disk and renamed over ``filepath``, on an
    error (or a kill) ``filepath`` keeps its previous version and the
    temporary file is removed.

    For writers that want a path rather than bytes (``torch.onnx.export``,
    ``torch.save``, ``Config.dump``). Creates the parent directory when
    missing; the file gets the permissions a plain ``open(filepath, 'w')``
    would give (``0o666`` minus the umask).

    Args:
        filepath (str | Path): The target path.

    Yields:
        str: The temporary path (created empty).
    """
    filepath = os.fspath(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    if osp.isdir(filepath):
        raise IsADirectoryError(errno.EISDIR, 'a folder is in the way',
                                filepath)
    temp = osp.join(
        dirname, f'.{osp.basename(filepath)}.{os.getpid()}.'
        f'{secrets.token_hex(4)}.tmp')
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise _naming(error, filepath) from error
    try:
        yield temp
        with open(temp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(temp, filepath)
    except BaseException as error:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise _naming(error, filepath) from error
        raise
    _fsync_dir(dirname)


def atomic_write(data: Union[bytes, str], filepath: PathLike,
                 encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` so that the file is never partial
    (:func:`atomic_path`).

    Args:
        data (bytes | str): the whole content; ``str`` is encoded.
        filepath (str | Path): the target path.
        encoding (str): encoding of a ``str``. Defaults to ``'utf-8'``.
    """
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(filepath) as temp, open(temp, 'wb') as f:
        f.write(payload)


def _naming(error: OSError, filepath: str) -> OSError:
    """``error`` naming ``filepath`` (a failed write or fsync, e.g. on a full
    disk, names no file; the temporary file's name means nothing to the
    user)."""
    if error.errno is None:
        return error
    # OSError(errno, ...) returns the matching subclass (PermissionError).
    return OSError(error.errno, error.strerror, filepath)


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose writes are atomic.

    ``put`` and ``put_text`` go through :func:`atomic_write`; everything
    else is ``LocalBackend``'s. Select it with
    ``backend_args=dict(backend='atomic_local')``;
    :class:`AtomicCheckpointHook` does so by default for local checkpoint
    folders.
    """

    def put(self, obj: bytes, filepath: PathLike) -> None:
        """Write bytes to ``filepath`` atomically (parents are created)."""
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: PathLike,
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically (parents are created)."""
        atomic_write(obj, filepath, encoding=encoding)
