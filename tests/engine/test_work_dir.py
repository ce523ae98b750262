"""work_dir_error: which OSErrors are about the work dir, and their
sentence."""
import errno
import os
from pathlib import Path

from mmsaol.engine import WorkDirError, work_dir_error
from mmsaol.troubleshooting import problem


def test_no_space_names_the_file_and_the_fix(tmp_path: Path) -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                    str(tmp_path / 'epoch_3.pth'))
    explained = work_dir_error(error, str(tmp_path))
    assert isinstance(explained, WorkDirError)
    message = str(explained)
    assert message.startswith(f'No space left on device while writing '
                              f'{tmp_path / "epoch_3.pth"} (work dir '
                              f'{tmp_path}).')
    assert '--work-dir DIR' in message and '--resume' in message
    assert any(t in message for t in problem('work_dir_full').messages)
    # A write error names no file.
    anonymous = work_dir_error(OSError(errno.EDQUOT, 'Disk quota exceeded'),
                               str(tmp_path))
    assert "while writing the run's outputs" in str(anonymous)


def test_permission_errors_in_or_above_the_work_dir(tmp_path: Path) -> None:
    work_dir = tmp_path / 'a' / 'run'
    for path in (work_dir, work_dir / '20240101_000000', tmp_path / 'a'):
        error = PermissionError(errno.EACCES, 'Permission denied',
                                str(path))
        message = str(work_dir_error(error, str(work_dir)))
        assert message == (
            f'Cannot write to the work dir {work_dir}: Permission denied '
            f'({path}). Make it writable, or pick a folder you can write to '
            'with --work-dir DIR.')
        assert any(t in message
                   for t in problem('work_dir_unwritable').messages)
    read_only = OSError(errno.EROFS, 'Read-only file system', str(work_dir))
    assert 'Read-only file system' in str(work_dir_error(read_only,
                                                         str(work_dir)))


def test_other_errors_are_not_about_the_work_dir(tmp_path: Path) -> None:
    work_dir = str(tmp_path / 'run')
    elsewhere = PermissionError(errno.EACCES, 'Permission denied',
                                str(tmp_path / 'data' / 'img.png'))
    assert work_dir_error(elsewhere, work_dir) is None
    assert work_dir_error(PermissionError(errno.EACCES, 'Permission denied'),
                          work_dir) is None
    missing = FileNotFoundError(errno.ENOENT, 'No such file or directory',
                                work_dir)
    assert work_dir_error(missing, work_dir) is None
