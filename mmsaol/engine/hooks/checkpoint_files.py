"""Which files are a run's own checkpoints, and removing only those.

mmengine 0.10.7's ``CheckpointHook`` removes files whose paths come from the
checkpoint being resumed (the message hub's ``best_ckpt`` and
``keep_ckpt_ids``): a crafted or copied checkpoint could make it delete any
file, or the best checkpoint of another run. The helpers here decide whether
a path is a checkpoint of *this* run, i.e. a file directly in the run's
checkpoint folder (after resolving symbolic links) whose name the hook
itself would give a checkpoint; :func:`remove_own_checkpoint` deletes
nothing else.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import shutil
from typing import Optional

__all__ = [
    'checkpoint_folder', 'is_remote', 'own_checkpoint',
    'remove_own_checkpoint', 'step_pattern'
]


def is_remote(path) -> bool:
    """Whether a path is a URI (``s3://...``) rather than a local path."""
    return path is not None and '://' in str(path)


def step_pattern(filename_tmpl: str, best: bool = False
                 ) -> Optional[re.Pattern]:
    """A regex matching the names of a checkpoint hook's files.

    Group 1 is the step, e.g. ``^epoch_(\\d+)\\.pth$`` for
    ``'epoch_{}.pth'``. With ``best=True`` it matches the best checkpoints,
    ``best_<metric>_epoch_<N>.pth`` (``CheckpointHook._save_best_checkpoint``
    names them so, with ``/`` in the metric replaced by ``_``).

    Args:
        filename_tmpl (str): the hook's ``filename_tmpl``.
        best (bool): match best checkpoints instead. Defaults to False.

    Returns:
        re.Pattern | None: None when the template has not exactly one
        ``{}`` field.
    """
    parts = re.split(r'\{[^{}]*\}', filename_tmpl)
    if len(parts) != 2 or '/' in filename_tmpl:
        return None
    prefix = r'best_[^/]+_' if best else ''
    return re.compile(f'^{prefix}{re.escape(parts[0])}(\\d+)'
                      f'{re.escape(parts[1])}$')


def checkpoint_folder(hook, runner) -> str:
    """The folder a ``CheckpointHook`` will save this run's checkpoints in.

    As ``CheckpointHook.before_train`` (mmengine 0.10.7) resolves it: the
    work dir, or ``<out_dir>/<basename of the work dir>`` when ``out_dir``
    is set. For use before ``before_train``, which replaces ``hook.out_dir``
    by this folder.
    """
    work_dir = str(runner.work_dir)
    out_dir = str(hook.out_dir or work_dir)
    if out_dir == work_dir:
        return work_dir
    basename = osp.basename(work_dir.rstrip(osp.sep))
    return out_dir.rstrip('/') + '/' + basename


def own_checkpoint(path, folder: str, filename_tmpl: str) -> bool:
    """Whether ``path`` is a checkpoint file of the run saving to ``folder``.

    True when the path, with symbolic links resolved, lies directly in
    ``folder`` (also resolved) and its name is one the checkpoint hook gives
    (``filename_tmpl``, or a best checkpoint of it), both before and after
    resolving. For a remote folder (``s3://...``) the path must be
    ``<folder>/<such a name>``.

    Args:
        path: the candidate (from a checkpoint's message hub: untrusted).
        folder (str): the run's checkpoint folder
            (:func:`checkpoint_folder`).
        filename_tmpl (str): the hook's ``filename_tmpl``.
    """
    if not isinstance(path, str) or not path:
        return False
    patterns = [step_pattern(filename_tmpl), step_pattern(filename_tmpl,
                                                          best=True)]
    patterns = [p for p in patterns if p is not None]

    def named(name: str) -> bool:
        return any(p.match(name) for p in patterns)

    if is_remote(folder) or is_remote(path):
        head, _, name = path.rpartition('/')
        return head == folder.rstrip('/') and named(name) and \
            '..' not in path.split('/')
    real = osp.realpath(path)
    return (osp.dirname(real) == osp.realpath(folder)
            and named(osp.basename(path)) and named(osp.basename(real)))


def remove_own_checkpoint(path: str, folder: str, filename_tmpl: str,
                          file_backend, logger) -> bool:
    """Delete ``path`` if it is one of the run's checkpoints.

    Anything else is left alone with a warning: a file outside the run's
    checkpoint folder (after resolving links), or one not named like its
    checkpoints. A missing file is no error.

    Args:
        path (str): the checkpoint to delete.
        folder (str): the run's checkpoint folder.
        filename_tmpl (str): the hook's ``filename_tmpl``.
        file_backend: the hook's mmengine file backend (remote folders).
        logger: where the warning goes.

    Returns:
        bool: whether a file or (deepspeed) folder was deleted.
    """
    if not own_checkpoint(path, folder, filename_tmpl):
        logger.warning(
            f'Not deleting {path!r}: it is not a checkpoint of this run '
            f'(only files named like its checkpoints directly in {folder} '
            'are deleted).')
        return False
    if is_remote(path):
        if file_backend.isfile(path):
            file_backend.remove(path)
            return True
        return False
    if osp.isfile(path):
        os.remove(path)
        return True
    if osp.isdir(path):  # checkpoints saved by deepspeed are folders
        shutil.rmtree(path)
        return True
    return False
