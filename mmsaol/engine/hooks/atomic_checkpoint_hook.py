"""A CheckpointHook whose checkpoints survive a kill at any moment."""
from __future__ import annotations

import os
import os.path as osp
import zipfile
from typing import Dict, List, Optional, Tuple

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from ...compat.checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    check_container,
    safe_torch_load,
)
from .atomic_file import atomic_write, is_temp_file
from .checkpoint_files import is_remote, remove_own_checkpoint, step_pattern

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
    try:  # the declared sizes first: a zip bomb is refused at once
        check_container(path)
    except CorruptCheckpointError:
        return 'it is truncated or damaged'
    except UnsafeCheckpointError:
        return None  # loading it fails with that clear error
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


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` made crash-safe.

    Same arguments and behaviour as ``CheckpointHook`` (mmengine 0.10.7),
    plus, so that a run killed at any moment (``SIGKILL``, power loss, OOM
    killer), even while it writes a checkpoint, resumes with ``--resume``
    from its last complete checkpoint and ends as it would have without
    the kill:

    - checkpoints, best checkpoints and the ``last_checkpoint`` pointer are
      written atomically
      (:func:`~mmsaol.engine.hooks.atomic_file.atomic_write`: temporary file
      in the same folder, flush + fsync, ``os.replace``, fsync of the
      folder). The stock hook writes them in place, so a kill leaves a
      truncated file under the final name.
    - a step's checkpoint is written once the validation that follows the
      step (if any) is done, so it holds that validation's best-checkpoint
      bookkeeping and the random state after it. The stock hook saves
      before validating; a run killed during that validation or while it
      writes the new best checkpoint resumes after the step and never
      validates it again, and keeps a best checkpoint of a worse step.
    - a new best checkpoint is complete, and the step's checkpoint naming
      it is written, before the previous best checkpoint is deleted (the
      stock hook deletes first). A kill between the two leaves the old one
      listed in the message hub (``stale_best_ckpts``), and the resumed run
      deletes it.
    - the checkpoint outdated by ``max_keep_ckpts`` is deleted after the new
      checkpoint and the pointer are written (the stock hook deletes first,
      so with ``max_keep_ckpts=1`` a kill can leave no checkpoint at all).
    - only this run's checkpoints are ever deleted
      (:func:`~mmsaol.engine.hooks.checkpoint_files.remove_own_checkpoint`:
      files named like its checkpoints, directly in its checkpoint folder
      after resolving links). The stock hook deletes whatever path the
      resumed checkpoint's message hub names as ``best_ckpt``.
    - ``--resume`` without a path (auto resume): when ``last_checkpoint``
      names a missing or damaged file (:func:`checkpoint_problem`) or holds
      binary data, the newest complete checkpoint of the run is used
      instead, with a warning; if there is none, the run stops with a
      message saying what to do. This happens in ``before_run``, which
      mmengine calls before it reads the pointer.
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
                and not is_remote(self.out_dir):
            self.backend_args = dict(backend='atomic_local')
        # (step, meta) of the checkpoint that waits for the validation.
        self._pending: Optional[Tuple[int, dict]] = None

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
        pattern = step_pattern(self.filename_tmpl)
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
        with open(pointer, 'rb') as f:
            raw = f.read()
        try:
            named = raw.decode('utf-8').strip()
        except UnicodeDecodeError:
            named = '\x00'
        if '\x00' in named:
            named, said = '', (f'{pointer} holds binary data, not the path '
                               'of a checkpoint')
        elif not named:
            said = f'{pointer} is empty'
        elif is_remote(named):
            return None  # a remote store: mmengine's loader reports errors
        else:
            problem = checkpoint_problem(named)
            if problem is None:
                return None
            said = f'{pointer} names {named!r}, but {problem}'
        for _, path in self._candidates(runner, named):
            if path != named and checkpoint_problem(path) is None:
                runner.logger.warning(
                    f'--resume: {said}. Resuming from the newest complete '
                    f'checkpoint, {path}, instead.')
                atomic_write(path, pointer)
                return None
        return (f'--resume: {said}, and no other complete checkpoint of this '
                'run was found next to it. Resume from a checkpoint you have '
                f'with --resume PATH, or delete {pointer} to train from '
                'scratch.')

    # -------------------------------------------------------------- saving
    def before_train(self, runner) -> None:
        """Resolve the output folder (as ``CheckpointHook``), delete the
        temporary files of writes that a kill interrupted, and the previous
        best checkpoints a kill kept from being deleted."""
        super().before_train(runner)
        self._pending = None
        if not is_main_process():
            return
        for folder in dict.fromkeys((str(self.out_dir), runner.work_dir)):
            if is_remote(folder) or not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = osp.join(folder, name)
                # Only files: a folder of that name is not our leftover.
                if is_temp_file(name) and osp.isfile(path) and \
                        not osp.islink(path):
                    os.remove(path)
        stale = runner.message_hub.get_info('stale_best_ckpts')
        if isinstance(stale, list) and stale:
            current = set(self._best_paths().values()) \
                if self.save_best else set()
            for path in stale:
                if path not in current:
                    self._remove(runner, path, 'previous best checkpoint')
            runner.message_hub.update_info('stale_best_ckpts', [])

    def _save_checkpoint(self, runner) -> None:
        """Note the step to save; :meth:`_flush` saves it after the
        validation that follows it, or before the next step."""
        if self.by_epoch:
            step = runner.epoch + 1
            self._pending = (step, dict(epoch=step, iter=runner.iter))
        else:
            step = runner.iter + 1
            self._pending = (step, dict(epoch=runner.epoch, iter=step))

    def _flush(self, runner) -> None:
        """Save the checkpoint :meth:`_save_checkpoint` noted, if any."""
        if self._pending is not None:
            step, meta = self._pending
            self._pending = None
            self._save_checkpoint_with_step(runner, step, meta)

    def before_train_epoch(self, runner) -> None:
        """No validation followed the last epoch: save its checkpoint."""
        self._flush(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """No validation followed the last step: save its checkpoint."""
        self._flush(runner)

    def after_train(self, runner) -> None:
        """Save the last checkpoint if no validation followed it, then
        publish (``published_keys``) as ``CheckpointHook``."""
        self._flush(runner)
        super().after_train(runner)

    def _best_paths(self) -> Dict[str, Optional[str]]:
        """The current best checkpoint per key indicator (key ``''`` when
        there is one, whose name ``'auto'`` changes at the first
        validation)."""
        if len(self.key_indicators) == 1:
            return {'': self.best_ckpt_path}
        return dict(self.best_ckpt_path_dict)

    def _set_best_paths(self, paths: Dict[str, Optional[str]]) -> None:
        if len(self.key_indicators) == 1:
            (self.best_ckpt_path, ) = paths.values()
        else:
            self.best_ckpt_path_dict.update(paths)

    def after_val_epoch(self, runner, metrics) -> None:
        """``CheckpointHook.after_val_epoch`` (mmengine 0.10.7) reordered:
        write the new best checkpoint, then the step's checkpoint (and the
        pointer), and only then delete the previous best checkpoint."""
        if not self.save_best or not metrics:
            super().after_val_epoch(runner, metrics)
            self._flush(runner)
            return
        # The stock code deletes the previous best checkpoint first and
        # saves the last step again after a new best: both are done below,
        # in a safe order, so it sees no previous best and no last step.
        old = self._best_paths()
        last_ckpt = self.last_ckpt
        self._set_best_paths({key: None for key in old})
        self.last_ckpt = None
        try:
            super().after_val_epoch(runner, metrics)
        finally:
            self.last_ckpt = last_ckpt
            new = self._best_paths()
            self._set_best_paths(
                {key: new.get(key) or old.get(key) for key in new})
        replaced = [path for key, path in old.items() if path and
                    new.get(key) not in (None, path)]
        if replaced:
            runner.message_hub.update_info('stale_best_ckpts', replaced)
        if self._pending is not None:
            self._flush(runner)
        elif any(new.values()) and self.last_ckpt is not None:
            # As the stock hook: the checkpoint --resume uses must know
            # the new best checkpoint.
            step = runner.epoch if self.by_epoch else runner.iter
            self._save_checkpoint_with_step(
                runner, step, dict(epoch=runner.epoch, iter=runner.iter))
        if replaced and is_main_process():
            for path in replaced:
                self._remove(runner, path, 'previous best checkpoint')
            runner.message_hub.update_info('stale_best_ckpts', [])

    def _remove(self, runner, path: str, what: str) -> None:
        """Delete one of this run's checkpoints (nothing else)."""
        if remove_own_checkpoint(path, str(self.out_dir), self.filename_tmpl,
                                 self.file_backend, runner.logger):
            runner.logger.info(f'The {what} {path} is removed.')

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
            self._remove(
                runner,
                self.file_backend.join_path(
                    self.out_dir, self.filename_tmpl.format(outdated)),
                'checkpoint outdated by max_keep_ckpts')
