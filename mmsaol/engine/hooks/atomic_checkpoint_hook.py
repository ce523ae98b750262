"""A CheckpointHook whose checkpoints survive a kill at any moment."""
from __future__ import annotations

import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from ...compat.checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    safe_torch_load,
)
from .atomic_file import atomic_write, is_temp_file

__all__ = ['AtomicCheckpointHook', 'checkpoint_problem']

#: The file mmengine's ``find_latest_checkpoint`` reads in the work_dir.
POINTER = 'last_checkpoint'


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is no complete checkpoint, or None if it is one.

    ``torch.save`` writes a zip archive whose central directory comes last,
    so a truncated file is no valid zip; a complete one is checked entry by
    entry against its CRC-32s. A file in another format is handed to the
    safe loader. A file the safe loader refuses as unsafe counts as
    complete: loading it later fails with that clear error instead.

    Args:
        path (str): a checkpoint path.

    Returns:
        str | None: e.g. ``'it does not exist'``, or None.
    """
    if not osp.isfile(path):
        return 'it does not exist'
    if osp.getsize(path) == 0:
        return 'it is empty'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            return f'it is damaged ({err})'
        return None if bad is None else f'it is damaged (bad CRC in {bad})'
    try:
        safe_torch_load(path, map_location='cpu')
    except CorruptCheckpointError:
        return 'it is truncated or damaged'
    except UnsafeCheckpointError:
        pass
    return None


def _is_remote(path) -> bool:
    """Whether a checkpoint folder is a URI (``s3://...``) rather than a
    local path."""
    return path is not None and '://' in str(path)


def _step_pattern(filename_tmpl: str) -> Optional[re.Pattern]:
    """A regex whose group 1 is the step of a checkpoint name, e.g.
    ``epoch_(\\d+)\\.pth`` for ``'epoch_{}.pth'``."""
    parts = re.split(r'\{[^{}]*\}', filename_tmpl)
    if len(parts) != 2:
        return None
    return re.compile(f'^{re.escape(parts[0])}(\\d+){re.escape(parts[1])}$')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` made crash-safe.

    Same arguments and behaviour as ``CheckpointHook`` (mmengine 0.10.7),
    plus, so that a run killed at any moment (``SIGKILL``, power loss, OOM
    killer), even while it writes a checkpoint, resumes with ``--resume``
    from its last complete checkpoint:

    - checkpoints and the ``last_checkpoint`` pointer are written atomically
      (:func:`~mmsaol.engine.hooks.atomic_file.atomic_write`: temporary file
      in the same folder, flush + fsync, ``os.replace``, fsync of the
      folder). The stock hook writes both in place, so a kill leaves a
      truncated file under the final name; that is also what happens to
      the checkpoint the pointer already names when ``save_best`` saves the
      same epoch again after validation.
    - the checkpoint outdated by ``max_keep_ckpts`` is deleted after the new
      checkpoint and the pointer are written (the stock hook deletes first,
      so with ``max_keep_ckpts=1`` a kill can leave no checkpoint at all).
    - ``--resume`` without a path (auto resume): when ``last_checkpoint``
      names a missing or damaged file (:func:`checkpoint_problem`), the
      newest complete checkpoint of the run is used instead, with a
      warning; if there is none, the run stops with a message saying what
      to do. This happens in ``before_run``, which mmengine calls before it
      reads the pointer.
    - leftover temporary files of interrupted writes are deleted when
      training starts.

    Use it in place of the stock hook:
    ``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))``.

    Args:
        *args: Arguments of ``CheckpointHook``.
        **kwargs: Keyword arguments of ``CheckpointHook``. When neither
            ``backend_args`` nor ``file_client_args`` is given and
            ``out_dir`` is local, ``backend_args`` defaults to
            ``dict(backend='atomic_local')``; remote object stores write
            whole objects anyway and keep their own backend.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.backend_args is None and self.file_client_args is None \
                and not _is_remote(self.out_dir):
            self.backend_args = dict(backend='atomic_local')

    # ----------------------------------------------------------- resuming
    def before_run(self, runner) -> None:
        """On auto resume, point ``last_checkpoint`` at a complete file."""
        # mmengine 0.10.7 keeps the --resume request only in these private
        # attributes (Runner.load_or_resume reads them right after
        # before_run).
        if not getattr(runner, '_resume', False) or \
                getattr(runner, '_load_from', None) is not None:
            return
        pointer = osp.join(runner.work_dir, POINTER)
        outcome: List[Optional[str]] = [None]
        if is_main_process() and osp.isfile(pointer):
            outcome[0] = self._repair_pointer(runner, pointer)
        broadcast_object_list(outcome)  # every rank stops, or none
        if outcome[0] is not None:
            raise FileNotFoundError(outcome[0])

    def _checkpoint_dirs(self, runner, named: str) -> List[str]:
        """Folders that may hold this run's checkpoints."""
        # Where CheckpointHook.before_train will put them.
        out_dir = str(self.out_dir or runner.work_dir)
        if out_dir != runner.work_dir:
            out_dir = osp.join(out_dir,
                               osp.basename(runner.work_dir.rstrip(osp.sep)))
        dirs = [osp.dirname(named)] if named else []
        return [d for d in dict.fromkeys(dirs + [out_dir]) if osp.isdir(d)]

    def _candidates(self, runner, named: str) -> List[Tuple[int, str]]:
        """``(step, path)`` of this run's checkpoints, newest first."""
        pattern = _step_pattern(self.filename_tmpl)
        if pattern is None:
            return []
        found = []
        for folder in self._checkpoint_dirs(runner, named):
            for name in os.listdir(folder):
                match = pattern.match(name)
                if match:
                    found.append((int(match.group(1)), osp.join(folder,
                                                               name)))
        return sorted(found, reverse=True)

    def _repair_pointer(self, runner, pointer: str) -> Optional[str]:
        """Rewrite ``pointer`` to the newest complete checkpoint when it
        names a bad file. Returns an error message when there is none."""
        with open(pointer) as f:
            named = f.read().strip()
        if _is_remote(named):
            return None  # a remote store: mmengine's loader reports errors
        problem = checkpoint_problem(named) if named else 'it is empty'
        if problem is None:
            return None
        named_as = repr(named) if named else 'nothing'
        for _, path in self._candidates(runner, named):
            if path != named and checkpoint_problem(path) is None:
                runner.logger.warning(
                    f'--resume: {pointer} names {named_as}, but {problem}. '
                    f'Resuming from the newest complete checkpoint, {path}, '
                    'instead.')
                atomic_write(path, pointer)
                return None
        return (f'--resume: {pointer} names {named_as}, but {problem}, and '
                'no other complete checkpoint of this run was found next to '
                'it. Resume from a checkpoint you have with --resume PATH, '
                f'or delete {pointer} to train from scratch.')

    # -------------------------------------------------------------- saving
    def before_train(self, runner) -> None:
        """Resolve the output folder (as ``CheckpointHook``) and delete the
        temporary files of writes that a kill interrupted."""
        super().before_train(runner)
        if not is_main_process():
            return
        for folder in dict.fromkeys((str(self.out_dir), runner.work_dir)):
            if _is_remote(folder) or not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                if is_temp_file(name):
                    os.remove(osp.join(folder, name))

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """``CheckpointHook._save_checkpoint_with_step`` (mmengine 0.10.7)
        reordered for crash safety: save the checkpoint, then write the
        pointer, and only then delete the checkpoint ``max_keep_ckpts``
        outdates. Both writes are atomic through ``backend_args``."""
        outdated = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # _save_checkpoint and _save_best_checkpoint may both save the
            # same step; it is kept once.
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        # Model parallel-like training should involve pulling sharded
        # states from all ranks; only the main process writes files.
        if not is_main_process():
            return
        atomic_write(self.last_ckpt, osp.join(runner.work_dir, POINTER))
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)
