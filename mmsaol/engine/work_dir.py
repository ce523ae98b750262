"""A work dir the run cannot write to, said in one sentence.

mmengine creates the work dir, a log folder in it, the dumped config, logs
and checkpoints; a read-only, foreign or full folder fails in any of these
with an ``OSError`` traceback from deep inside mmengine or torch.
:func:`work_dir_error` turns such an error into :class:`WorkDirError`, whose
message names the folder and the fix.
"""
from __future__ import annotations

import errno
import os.path as osp
from typing import Optional

__all__ = ['WorkDirError', 'work_dir_error']

#: The device or the user's quota is full.
NO_SPACE = frozenset((errno.ENOSPC, errno.EDQUOT))
#: No permission, or a read-only file system.
DENIED = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))


class WorkDirError(OSError):
    """The run cannot write to its work dir: read-only, not the user's, or
    no space left on its device."""


def _touches(path: str, work_dir: str) -> bool:
    """Whether ``path`` is the work dir, inside it or one of its parents
    (creating the work dir creates them), after resolving links."""
    real, folder = osp.realpath(path), osp.realpath(work_dir)
    return (real == folder or real.startswith(folder + osp.sep)
            or folder.startswith(real.rstrip(osp.sep) + osp.sep))


def work_dir_error(error: OSError, work_dir: str) -> Optional[WorkDirError]:
    """The sentence for an error writing the run's outputs, if it is one.

    Args:
        error (OSError): what a training run raised.
        work_dir (str): the run's ``work_dir``.

    Returns:
        WorkDirError | None: None when ``error`` is not about writing: its
        errno is not one of :data:`NO_SPACE`, :data:`DENIED` and
        ``EISDIR`` (a folder at a file's name), or a
        permission error names no file in (or above) the work dir.
    """
    work_dir = osp.abspath(work_dir)
    names = [str(n) for n in (error.filename, error.filename2) if n]
    reason = error.strerror or str(error)
    if error.errno in NO_SPACE:
        what = names[0] if names else "the run's outputs"
        return WorkDirError(
            f'{reason} while writing {what} (work dir {work_dir}). Free '
            'space on that device or pick another folder with --work-dir '
            'DIR; the checkpoints already written are complete, so '
            '--resume continues from the last one.')
    if error.errno == errno.EISDIR and names:
        return WorkDirError(
            f'Cannot write {names[0]}: a folder of that name is in the way '
            f'(work dir {work_dir}). Move or rename the folder, or pick '
            'another folder with --work-dir DIR.')
    touched = [n for n in names if _touches(n, work_dir)]
    if error.errno in DENIED and touched:
        return WorkDirError(
            f'Cannot write to the work dir {work_dir}: {reason} '
            f'({touched[0]}). Make it writable, or pick a folder you can '
            'write to with --work-dir DIR.')
    return None
