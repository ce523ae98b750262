"""atomic_write and the 'atomic_local' mmengine file backend."""
import os
import stat
from pathlib import Path

import pytest
from mmengine.fileio import get_file_backend

from mmsaol.engine import AtomicLocalBackend, atomic_write
from mmsaol.engine.hooks.atomic_file import is_temp_file


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / 'sub' / 'epoch_1.pth'
    atomic_write(b'first', target)
    assert target.read_bytes() == b'first'
    atomic_write('second', str(target))
    assert target.read_text() == 'second'
    assert os.listdir(target.parent) == ['epoch_1.pth']


def test_permissions_as_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / 'plain'
    plain.write_bytes(b'x')
    atomic_write(b'x', tmp_path / 'atomic')
    mode = stat.S_IMODE(os.stat(tmp_path / 'atomic').st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)


def test_failed_write_keeps_the_old_file(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    target = tmp_path / 'last_checkpoint'
    atomic_write('epoch_1.pth', target)
    seen = []

    def failing_fsync(fd: int) -> None:
        seen.extend(n for n in os.listdir(tmp_path) if is_temp_file(n))
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(OSError, match='No space left') as info:
        atomic_write('epoch_2.pth', target)
    assert info.value.errno == 28
    assert info.value.filename == str(target)  # not the temporary file
    assert target.read_text() == 'epoch_1.pth'
    assert seen == [n for n in seen if n.startswith('.last_checkpoint.')]
    assert len(seen) == 1
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_temp_names() -> None:
    assert is_temp_file('.epoch_3.pth.4242.0123abcd.tmp')
    assert not is_temp_file('epoch_3.pth')
    assert not is_temp_file('.epoch_3.pth.tmp')


def test_backend(tmp_path: Path) -> None:
    backend = get_file_backend(str(tmp_path),
                               backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'\x00\x01', tmp_path / 'a' / 'x.pth')
    backend.put_text('hello', str(tmp_path / 'y.txt'))
    assert (tmp_path / 'a' / 'x.pth').read_bytes() == b'\x00\x01'
    assert backend.get_text(str(tmp_path / 'y.txt')) == 'hello'
    # Not the default for local paths.
    assert not isinstance(get_file_backend(str(tmp_path)),
                          AtomicLocalBackend)
