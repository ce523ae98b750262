"""Tests for mmsaol.compat.checkpoint (safe checkpoint loading).

Real mmengine training checkpoints are made once per module by tiny CPU
Runner runs (mmpretrain ImageClassifier, ResNet_CIFAR-18 with 8 channels,
mmpretrain CustomDataset on 16x16 PNG files), one with mmengine's stock
CheckpointHook and one with mmsaol's AtomicCheckpointHook, then loaded with
the safe loader, resumed from, and compared with crafted malicious and
damaged files (each built here, opcode by opcode where pickle itself would
not write it).
"""
from __future__ import annotations

import copy
import importlib
import os
import os.path as osp
import pickle
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint

import mmsaol.engine  # noqa: F401  (registers AtomicCheckpointHook)
from mmsaol.compat import checkpoint as safe_ckpt
from mmsaol.compat.checkpoint import (
    MAX_EXPANSION_ENV,
    MAX_NESTING,
    NUMPY_KINDS,
    SAFE_GLOBALS,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    install_safe_checkpoint_loader,
    loaded_from,
    safe_torch_load,
)


class _Reduce:
    """Pickles as ``fn(*args)``, then ``BUILD state`` if a state is given:
    the shape of a malicious checkpoint."""

    def __init__(self, fn: Any, args: tuple, state: Any = None) -> None:
        self.fn = fn
        self.args = args
        self.state = state

    def __reduce__(self) -> tuple:
        return self.fn, self.args, self.state

    def __call__(self, *args: Any) -> Any:
        # Only so that pickle accepts a _Reduce as the callable of another
        # _Reduce ("call the result of a call"); never called in the tests.
        raise AssertionError('not to be called')


def _runner_cfg(root: Path, work_dir: Path, name: str, max_epochs: int,
                checkpoint_hook: str = 'CheckpointHook') -> dict:
    pipeline = [{'type': 'LoadImageFromFile'}, {'type': 'PackInputs'}]

    def loader(split: str, shuffle: bool) -> dict:
        return {
            'batch_size': 4,
            'num_workers': 0,
            'dataset': {
                'type': 'CustomDataset',
                'data_root': str(root / split),
                'pipeline': pipeline,
            },
            'sampler': {'type': 'DefaultSampler', 'shuffle': shuffle},
            'collate_fn': {'type': 'default_collate'},
        }

    model = {
        'type': 'ImageClassifier',
        'data_preprocessor': {
            'type': 'ClsDataPreprocessor',
            'num_classes': 2,
            'mean': [127.5] * 3,
            'std': [127.5] * 3,
        },
        'backbone': {
            'type': 'ResNet_CIFAR',
            'depth': 18,
            'stem_channels': 8,
            'base_channels': 8,
            'out_indices': (3, ),
        },
        'neck': {'type': 'GlobalAveragePooling'},
        'head': {
            'type': 'LinearClsHead',
            'num_classes': 2,
            'in_channels': 64,
            'loss': {'type': 'CrossEntropyLoss'},
        },
    }
    return {
        'model': model,
        'work_dir': str(work_dir),
        'experiment_name': name,
        'train_dataloader': loader('train', True),
        'val_dataloader': loader('val', False),
        'val_evaluator': {'type': 'Accuracy', 'topk': (1, )},
        'train_cfg': {
            'by_epoch': True,
            'max_epochs': max_epochs,
            'val_interval': 1,
        },
        'val_cfg': {},
        'optim_wrapper': {
            'optimizer': {'type': 'SGD', 'lr': 0.01, 'momentum': 0.9},
        },
        'param_scheduler': [
            {'type': 'MultiStepLR', 'by_epoch': True, 'milestones': [1]},
        ],
        'default_scope': 'mmpretrain',
        'default_hooks': {
            # save_best adds best_score / best_ckpt to the runtime info.
            'checkpoint': {
                'type': checkpoint_hook,
                'interval': 1,
                'save_best': 'auto',
            },
            'logger': {'type': 'LoggerHook', 'interval': 1},
        },
        'custom_hooks': [{'type': 'EMAHook', 'momentum': 1e-3}],
        'randomness': {'seed': 0},
        'log_level': 'WARNING',
    }


@pytest.fixture(scope='module')
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real 1-epoch training runs, with mmengine's CheckpointHook
    (``ckpt``, ``best``) and with AtomicCheckpointHook (``atomic``); returns
    the data root and the checkpoints."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from PIL import Image

    base = tmp_path_factory.mktemp('safe_ckpt')
    data = base / 'data'
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for cls in ('cat', 'dog'):
            folder = data / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f'{i}.png')
    work_dir = base / 'work'
    runner = Runner.from_cfg(
        Config(_runner_cfg(data, work_dir, 'mmsaol_safe_ckpt_train', 1)))
    runner.train()
    ckpt = work_dir / 'epoch_1.pth'
    (best, ) = work_dir.glob('best_*.pth')
    Runner.from_cfg(Config(_runner_cfg(
        data, base / 'atomic', 'mmsaol_safe_ckpt_atomic', 1,
        'AtomicCheckpointHook'))).train()
    atomic = base / 'atomic' / 'epoch_1.pth'
    assert ckpt.is_file() and atomic.is_file()
    return {'data': data, 'ckpt': ckpt, 'best': best, 'atomic': atomic,
            'base': base}


@pytest.fixture
def installed() -> Iterator[None]:
    """install_safe_checkpoint_loader(), undone after the test."""
    loader = mmengine_checkpoint.CheckpointLoader
    schemes = loader._schemes.copy()
    load_from_http = mmengine_checkpoint.load_from_http
    install_safe_checkpoint_loader()
    try:
        yield
    finally:
        loader._schemes = schemes
        mmengine_checkpoint.load_from_http = load_from_http


def _save(path: Path, payload: Any) -> Path:
    """Save ``payload`` inside an mmengine-shaped checkpoint dict."""
    torch.save({
        'meta': {'epoch': 1, 'note': payload},
        'state_dict': {'w': torch.ones(2)},
    }, path)
    return path


def _text(value: str) -> bytes:
    """Pickle opcodes pushing the string ``value``."""
    data = value.encode()
    return pickle.BINUNICODE + struct.pack('<I', len(data)) + data


def _global(path: str) -> bytes:
    """Pickle opcodes pushing the global ``path`` (module.name)."""
    module, name = path.rsplit('.', 1)
    return pickle.GLOBAL + f'{module}\n{name}\n'.encode()


def _meta_pickle(value: bytes) -> bytes:
    """A protocol-2 pickle of ``{'meta': <value>}``, ``value`` as opcodes."""
    return (pickle.PROTO + b'\x02' + pickle.EMPTY_DICT + _text('meta') +
            value + pickle.SETITEM + pickle.STOP)


def _history_buffer_with(state: bytes) -> bytes:
    """Opcodes of a HistoryBuffer (new object, as pickle protocol 2 writes
    it) built from the state ``state`` (opcodes)."""
    return (_global('mmengine.logging.history_buffer.HistoryBuffer') +
            pickle.EMPTY_TUPLE + pickle.NEWOBJ + state + pickle.BUILD)


def _rezip(src: Path, dst: Path, replace: dict | None = None,
           compression: int = zipfile.ZIP_STORED) -> Path:
    """Copy the archive ``src`` to ``dst``, replacing the records whose
    names end with ``/<key>`` of ``replace``, with ``compression``."""
    with zipfile.ZipFile(src) as zin:
        records = [(i.filename, zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, 'w', compression) as zout:
        for name, data in records:
            for suffix, new in (replace or {}).items():
                if name.endswith('/' + suffix):
                    data = new
            zout.writestr(name, data)
    return dst


def _archive(tmp_path: Path, name: str, data_pkl: bytes) -> Path:
    """A torch.save archive whose pickle is ``data_pkl``."""
    path = tmp_path / f'{name}.pth'
    torch.save({}, path)
    return _rezip(path, path, {'data.pkl': data_pkl})


def _record_data(path: Path, suffix: str) -> tuple[int, int]:
    """Offset and size of the data of the record ending with ``suffix``."""
    with zipfile.ZipFile(path) as archive:
        (info, ) = [i for i in archive.infolist()
                    if i.filename.endswith(suffix)]
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        name_length, extra_length = struct.unpack('<HH', f.read(30)[26:])
    return (info.header_offset + 30 + name_length + extra_length,
            info.file_size)


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _same(a: Any, b: Any, where: str = 'checkpoint') -> None:
    """``a`` and ``b`` have the same types, structure and values."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.flags.f_contiguous == b.flags.f_contiguous, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc'), where
    elif isinstance(a, HistoryBuffer):
        _same(vars(a), vars(b), where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f'{where}[{key!r}]')
        if type(a) is not dict:  # OrderedDict attributes (_metadata)
            _same(vars(a), vars(b), f'{where}.__dict__')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f'{where}[{i}]')
    elif isinstance(a, (float, np.floating)) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _numpy_dtypes(node: Any) -> set[np.dtype]:
    """The dtypes of every numpy array and scalar in ``node``."""
    if isinstance(node, (np.ndarray, np.generic)):
        return {node.dtype}
    if isinstance(node, HistoryBuffer):
        node = vars(node)
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, (list, tuple)):
        return set().union(*map(_numpy_dtypes, node))
    return set()


# --- a real training checkpoint ---------------------------------------------


def test_real_checkpoint_loads(trained: dict) -> None:
    before = set(torch.serialization.get_safe_globals())
    ckpt = safe_torch_load(trained['ckpt'], map_location='cpu')

    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers', 'ema_state_dict'} <= set(ckpt)
    assert ckpt['meta']['epoch'] == 1
    assert tuple(ckpt['meta']['dataset_meta']['classes']) == ('cat', 'dog')
    scalars = ckpt['message_hub']['log_scalars']
    loss = scalars['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert np.isfinite(loss.mean())
    assert loss.statistics('mean') == loss.mean()
    assert loss.current() == loss.data[0][-1]
    assert isinstance(scalars['val/accuracy/top1'].max(), np.floating)
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.floating)

    # The allow-list is scoped to safe_torch_load: afterwards the global
    # torch allow-list is as before and plain weights_only loading of the
    # same file still refuses the HistoryBuffer.
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(trained['ckpt'], weights_only=True)


def test_file_object_and_existing_safe_globals_kept(trained: dict,
                                                   tmp_path: Path) -> None:
    snapshot = torch.serialization.get_safe_globals()
    # Someone else allow-listed HistoryBuffer itself for the whole process:
    # while mmsaol loads, its checking stand-in answers to that name (a
    # HistoryBuffer state that is a list is still refused), and afterwards
    # the entry is back.
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        with open(trained['ckpt'], 'rb') as f:
            ckpt = safe_torch_load(f)
        assert type(ckpt['message_hub']['log_scalars']['train/loss']) is \
            HistoryBuffer
        with pytest.raises(CorruptCheckpointError,
                           match='HistoryBuffer state that is a list'):
            safe_torch_load(_archive(tmp_path, 'list_state', _meta_pickle(
                _history_buffer_with(pickle.EMPTY_LIST))))
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(snapshot)


def test_allow_list_is_scoped_to_the_loading_thread(tmp_path: Path) -> None:
    """While a load runs (here paused in its map_location callable), a
    torch.load in another thread does not get the allow-list, and a nested
    safe_torch_load leaves it on for the rest of the outer load."""
    inner = tmp_path / 'inner.pth'
    torch.save({'buffer': HistoryBuffer([1.0], [1])}, inner)
    outer = tmp_path / 'outer.pth'
    torch.save({'w': torch.ones(2), 'buffer': HistoryBuffer([2.0], [1])},
               outer)
    seen: dict[str, Any] = {}

    def other_thread() -> None:
        with pytest.raises(pickle.UnpicklingError) as info:
            torch.load(inner, weights_only=True)
        seen['other'] = str(info.value)

    def map_location(storage: Any, location: str) -> Any:
        if not seen:
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            seen['nested'] = safe_torch_load(inner)['buffer'].mean()
        return storage

    loaded = safe_torch_load(outer, map_location=map_location)
    assert 'HistoryBuffer' in seen['other']
    assert seen['nested'] == 1.0
    assert loaded['buffer'].mean() == 2.0


def test_resume_through_mmengine_after_install(
        trained: dict, installed: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mmengine.config import Config
    from mmengine.runner import Runner

    calls: list[str] = []
    real = safe_ckpt.safe_torch_load

    def spy(filename: Any, map_location: Any = None) -> Any:
        calls.append(os.fspath(filename))
        return real(filename, map_location=map_location)

    monkeypatch.setattr(safe_ckpt, 'safe_torch_load', spy)
    cfg = _runner_cfg(trained['data'], trained['base'] / 'resumed',
                      'mmsaol_safe_ckpt_resume', 2)
    cfg.update(load_from=str(trained['ckpt']), resume=True)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()

    assert calls == [str(trained['ckpt'])]
    assert runner.epoch == 2
    loss = runner.message_hub.get_scalar('train/loss')
    # 2 iterations from the resumed epoch 1 plus 2 from epoch 2.
    assert len(loss.data[0]) == 4
    assert np.isfinite(loss.mean())


def test_numpy_1_names_accepted(tmp_path: Path) -> None:
    # numpy 1.x wrote numpy.core.multiarray.* instead of numpy._core.*;
    # rewrite the pickle of a small checkpoint to those names.
    src = tmp_path / 'np2.pth'
    torch.save({'buffer': HistoryBuffer([1.0, 2.0], [1, 1]),
                'eta': np.float64(3.5), 'w': torch.ones(2)}, src)
    dst = tmp_path / 'np1.pth'
    with zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                assert b'numpy._core.multiarray' in data
                data = data.replace(b'numpy._core.multiarray',
                                    b'numpy.core.multiarray')
            zout.writestr(info.filename, data)

    ckpt = safe_torch_load(dst)
    assert ckpt['buffer'].mean() == 1.5
    assert ckpt['eta'] == 3.5
    assert torch.equal(ckpt['w'], torch.ones(2))


@pytest.mark.parametrize('which', ['ckpt', 'best', 'atomic'])
def test_real_checkpoints_load_as_plain_pickle_would(trained: dict,
                                                     which: str) -> None:
    """What the stock CheckpointHook (last and best checkpoint) and
    AtomicCheckpointHook write loads exactly as the unrestricted pickle
    loads it: same types, structure and values."""
    path = trained[which]
    safe = safe_torch_load(path, map_location='cpu')
    plain = torch.load(path, map_location='cpu', weights_only=False)
    _same(safe, plain)
    assert _numpy_dtypes(safe) == {np.dtype('float64'), np.dtype('int64')}


def test_allow_list_is_what_real_checkpoints_need(trained: dict) -> None:
    """Every allow-listed name is used by real mmengine checkpoints (numpy
    1.x spelling aside) and they use nothing else."""
    used = set()
    for which in ('ckpt', 'best', 'atomic'):
        used |= set(torch.serialization.get_unsafe_globals_in_checkpoint(
            trained[which]))
    assert used == {name for _, name in SAFE_GLOBALS
                    if not name.startswith('numpy.core.')}


def test_stored_records_are_read_once(trained: dict,
                                      monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    """The CRC-32 of every record is checked on the bytes the unpickler
    gets: each record is opened once (zipfile checks the CRC-32 at the end
    of a full read), none a second time for its check."""
    calls: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any,
            **kwargs: Any) -> Any:
        calls.append(getattr(name, 'filename', name))
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, 'open', spy)
    safe_torch_load(trained['atomic'])
    with zipfile.ZipFile(trained['atomic']) as archive:
        names = archive.namelist()
    assert sorted(calls) == sorted(names)


# --- crafted checkpoints ----------------------------------------------------


@pytest.mark.parametrize('kind', ['os.system', 'exec'])
def test_code_execution_refused(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / 'marker'
    if kind == 'os.system':
        payload = _Reduce(os.system, (f'touch {marker}', ))
        offending = f'{os.system.__module__}.system'  # posix.system
    else:
        payload = _Reduce(exec, (f'open({str(marker)!r}, "w").close()', ))
        offending = 'builtins.exec'
    path = _save(tmp_path / 'evil.pth', payload)

    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert str(path) in message
    assert offending in message
    assert 'NOT executed' in message
    assert 're-save' in message
    assert not marker.exists()


@pytest.mark.parametrize(
    'target, attr',
    [
        (HistoryBuffer, '__init__'),
        (HistoryBuffer, 'update'),
        (HistoryBuffer.mean, '__globals__'),  # first step to builtins
        (np.ndarray, 'tofile'),
        (torch.Tensor, 'numpy'),
    ])
def test_getattr_only_answers_history_buffer_methods(
        tmp_path: Path, target: Any, attr: str) -> None:
    path = _save(tmp_path / 'getattr.pth', _Reduce(getattr, (target, attr)))
    with pytest.raises(UnsafeCheckpointError, match='builtins.getattr'):
        safe_torch_load(path)


def test_getattr_os_system_refused(tmp_path: Path) -> None:
    # The stand-in for builtins.getattr itself refuses getattr(os, 'system').
    stand_in = {name: fn for fn, name in SAFE_GLOBALS}
    with pytest.raises(safe_ckpt._Refused, match='statistics methods'):
        stand_in['builtins.getattr'](os, 'system')
    assert stand_in['builtins.getattr'](HistoryBuffer, 'mean') is \
        HistoryBuffer.mean

    # A pickled getattr(import_module('os'), 'system')('touch marker').
    marker = tmp_path / 'marker'
    get_os = _Reduce(importlib.import_module, ('os', ))
    system = _Reduce(getattr, (get_os, 'system'))
    path = _save(tmp_path / 'evil.pth',
                 _Reduce(system, (f'touch {marker}', )))
    with pytest.raises(UnsafeCheckpointError,
                       match='importlib.import_module'):
        safe_torch_load(path)
    assert not marker.exists()


def test_history_buffer_statistics_cannot_be_rewritten(
        tmp_path: Path) -> None:
    methods = HistoryBuffer._statistics_methods
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    before = dict(methods)
    # A buffer whose pickled statistics map 'mean' to max plus an extra
    # entry; loading it would change every HistoryBuffer in the process.
    methods['mean'] = HistoryBuffer.max
    methods['extra'] = np.ndarray
    try:
        torch.save({'buffer': buffer}, tmp_path / 'poison.pth')
    finally:
        methods.clear()
        methods.update(before)

    with pytest.raises(UnsafeCheckpointError, match='statistics'):
        safe_torch_load(tmp_path / 'poison.pth')
    assert HistoryBuffer._statistics_methods == before
    assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0


# --- numpy data -------------------------------------------------------------

_reconstruct = safe_ckpt._numpy_multiarray()._reconstruct


def test_numpy_values_round_trip(tmp_path: Path) -> None:
    """Arrays and scalars of every allowed kind, in both byte orders, C and
    Fortran order and 0-d, load as numpy's own pickle loads them. (An
    empty array's data, b'', is pickled as builtins.bytes(), which torch's
    weights-only unpickler refuses; mmengine checkpoints hold none.)"""
    values = {f'{kind}{size}{order}': np.arange(6).astype(
        f'{order}{kind}{size}').reshape(2, 3)
        for kind, size in (('b', 1), ('i', 1), ('i', 8), ('u', 2),
                           ('f', 2), ('f', 4), ('f', 8), ('c', 16))
        for order in '<>'}
    values.update(
        fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        zero_d=np.array(3.5),
        f4=np.float32(1.5), b=np.bool_(True), i8=np.int64(-7),
        c8=np.complex64(1 - 2j), dtype=np.dtype('>i4'))
    assert {v.dtype.kind for v in values.values()
            if not isinstance(v, np.dtype)} == set(NUMPY_KINDS)
    path = tmp_path / 'numpy.pth'
    torch.save(values, path)
    _same(safe_torch_load(path), pickle.loads(pickle.dumps(values)))


@pytest.mark.parametrize('value, offending', [
    (np.array([1, 'a'], dtype=object), "numpy dtype 'O8'"),
    (np.zeros(2, dtype=[('a', 'f4'), ('b', 'i4')]), 'numpy dtype'),
    (np.zeros(2, dtype=[('a', 'O')]), 'numpy dtype'),
    (np.zeros(2, dtype=[('a', 'f4', (2, ))]), 'numpy dtype'),
    (np.array([b'ab']), "numpy dtype 'S2'"),
    (np.array(['ab']), "numpy dtype 'U2'"),
    (np.array(['2020-01-01'], dtype='M8[D]'), "numpy dtype 'M8'"),
    (np.str_('x'), "numpy dtype 'U1'"),
    (np.dtype('O'), "numpy dtype 'O8'"),
])
def test_numpy_types_outside_the_allow_list(tmp_path: Path, value: Any,
                                            offending: str) -> None:
    """Objects, fields, sub-arrays, strings and dates, as numpy itself
    pickles them, are refused."""
    path = _save(tmp_path / 'numpy.pth', value)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert f"'{path}': it needs {offending}" in str(info.value)


@pytest.mark.parametrize('base, field, offending', [
    ('S8', 'O8', "numpy dtype 'S8'"),
    ('f8', 'O8', "numpy dtype 'O8'"),
    ('f8', 'f8', 'a numpy float64 dtype with the state'),
])
def test_forged_dtype_state_refused(tmp_path: Path, base: str, field: str,
                                    offending: str) -> None:
    """numpy's dtype ``__setstate__`` takes fields and flags from the
    pickle: a dtype of bytes (numpy's BytesDType, formerly allow-listed)
    given an object field and the flag 'holds references', and an array of
    it whose 'object' is the pointer 0x4141414141414141, made copy.deepcopy
    (``--resume``) crash. Refused before any array is built."""
    field_dtype = _Reduce(np.dtype, (field, False, True))
    forged = _Reduce(np.dtype, (base, False, True),
                     (3, '|', None, ('f0', ), {'f0': (field_dtype, 0)}, 8,
                      1, 1))
    array = _Reduce(_reconstruct, (np.ndarray, (0, ), b'b'),
                    (1, (1, ), forged, False, b'A' * 8))
    path = _save(tmp_path / 'forged.pth', array)
    with pytest.raises(UnsafeCheckpointError) as info:
        copy.deepcopy(safe_torch_load(path))
    assert f"'{path}': it needs {offending}" in str(info.value)


@pytest.mark.parametrize('payload, error, match', [
    # A 1 TiB array: numpy allocates the shape given to _reconstruct.
    (_Reduce(_reconstruct, (np.ndarray, (1 << 40, ), b'b')),
     UnsafeCheckpointError, r'it needs numpy\._reconstruct\(numpy\.ndarray, '
     r'\(1099511627776,\)'),
    (_Reduce(np.ndarray, ((1 << 40, ), )), UnsafeCheckpointError,
     r'it needs numpy\.ndarray\(\.\.\.\)'),
    # numpy's own form, with a shape the data does not fill.
    (_Reduce(_reconstruct, (np.ndarray, (0, ), b'b'),
             (1, (1 << 40, ), np.dtype('f8'), False, b'\0' * 8)),
     CorruptCheckpointError,
     r'a numpy float64 array of shape \(1099511627776,\) with 8 bytes'),
    (_Reduce(_reconstruct, (np.ndarray, (0, ), b'b')),
     CorruptCheckpointError, 'a numpy array without its data'),
    (_Reduce(np.dtype, ('f8', False, True),
             (3, '<', None, None, None, -1, -1, 0, 'extra')),
     UnsafeCheckpointError, 'numpy writes the state'),
    # torch's own allow-list has bytearray: bytearray(1 PiB).
    (_Reduce(bytearray, (1 << 50, )), CorruptCheckpointError,
     'needs more memory than is available'),
])
def test_sizes_come_from_the_data(tmp_path: Path, payload: Any,
                                  error: type, match: str) -> None:
    path = _save(tmp_path / 'sized.pth', payload)
    with pytest.raises(error, match=match) as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)


# --- HistoryBuffer states ---------------------------------------------------


def _buffer(**changes: Any) -> HistoryBuffer:
    buffer = HistoryBuffer([1.0, 2.0], [1, 1])
    for key, value in changes.items():
        if value is None:
            delattr(buffer, key)
        else:
            setattr(buffer, key, value)
    return buffer


@pytest.mark.parametrize('make, match', [
    (lambda path: _archive(path.parent, path.stem, _meta_pickle(
        _history_buffer_with(pickle.EMPTY_LIST))),
     'a HistoryBuffer state that is a list, not a dict'),
    (lambda path: _save(path, _buffer(max_length=-1)),
     'a HistoryBuffer max_length of -1'),
    (lambda path: _save(path, _buffer(_log_history=[1.0, 2.0])),
     'a HistoryBuffer _log_history that is not a 1-d numpy array'),
    (lambda path: _save(path, _buffer(_count_history=None)),
     'a HistoryBuffer state with the keys'),
    (lambda path: _archive(path.parent, path.stem, _meta_pickle(
        _global('mmengine.logging.history_buffer.HistoryBuffer') +
        pickle.EMPTY_TUPLE + pickle.NEWOBJ)),
     'a HistoryBuffer without its state'),
])
def test_history_buffer_state_checked(tmp_path: Path, make: Any,
                                      match: str) -> None:
    path = make(tmp_path / 'buffer.pth')
    with pytest.raises(CorruptCheckpointError, match=match) as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)


# --- nesting ----------------------------------------------------------------


def _nested_lists(depth: int) -> bytes:
    """Opcodes of ``[[[...]]]`` nested ``depth`` deep (pickle itself would
    overflow the recursion writing it)."""
    return pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)


def test_deep_nesting_refused(tmp_path: Path) -> None:
    """200,000 nested lists made copy.deepcopy (--resume) fail with a
    RecursionError."""
    path = _archive(tmp_path, 'deep', _meta_pickle(_nested_lists(200_000)))
    with pytest.raises(CorruptCheckpointError,
                       match=f'nested more than {MAX_NESTING} levels') as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)

    path = _archive(tmp_path, 'nested', _meta_pickle(
        _nested_lists(MAX_NESTING - 1)))
    copy.deepcopy(safe_torch_load(path))


def test_container_inside_itself_refused(tmp_path: Path) -> None:
    cycle = (pickle.EMPTY_LIST + pickle.BINPUT + b'\x00' + pickle.BINGET +
             b'\x00' + pickle.APPEND)
    path = _archive(tmp_path, 'cycle', _meta_pickle(cycle))
    with pytest.raises(CorruptCheckpointError, match='contains itself'):
        safe_torch_load(path)


def test_shared_data_stays_shared(tmp_path: Path) -> None:
    """2**60 paths through 60 levels of shared lists: visited once each."""
    node: list = [np.float64(1.0)]
    for _ in range(60):
        node = [node, node]
    path = _save(tmp_path / 'shared.pth', node)
    loaded = safe_torch_load(path)['meta']['note']
    assert loaded[0] is loaded[1]
    assert type(loaded[0][0][0]) is list


# --- the zip container -----------------------------------------------------


@pytest.mark.parametrize('record', ['data/0', 'data.pkl'])
def test_bit_flip_fails_the_crc(tmp_path: Path, record: str) -> None:
    """One flipped bit in a tensor (it loaded silently and tools/test.py
    printed accuracy 0.0) or in the pickle (here in the text of a key)."""
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'head.weight': torch.arange(1000.0)}}, path)
    start, size = _record_data(path, record)
    offset = start + size // 2 if record == 'data/0' else \
        start + path.read_bytes()[start:start + size].index(b'head') + 1
    _flip_bit(path, offset)
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert f"Cannot read checkpoint '{path}'" in message
    assert f"record 'epoch_1/{record}' fails its CRC-32 check" in message


def test_deflated_records_bounded_and_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch inflates deflated records (it never writes them). 16 MiB of
    zeros deflate to about 16 KiB: refused by the default bound before
    anything is inflated, loaded when the user raises it."""
    stored = tmp_path / 'stored.pth'
    torch.save({'state_dict': {'w': torch.zeros(1 << 22)}}, stored)
    path = _rezip(stored, tmp_path / 'zeros.pth',
                  compression=zipfile.ZIP_DEFLATED)
    ratio = (1 << 24) / path.stat().st_size
    assert ratio > 500
    monkeypatch.delenv(MAX_EXPANSION_ENV, raising=False)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert f"Refused to load checkpoint '{path}': its records declare " \
        '16.0 MiB' in message
    assert f'at most 16 times ({MAX_EXPANSION_ENV})' in message
    assert f'set {MAX_EXPANSION_ENV}={np.ceil(ratio):.0f} or more' in \
        message

    monkeypatch.setenv(MAX_EXPANSION_ENV, '2000')
    assert torch.equal(safe_torch_load(path)['state_dict']['w'],
                       torch.zeros(1 << 22))

    # A deflated record whose data changed: inflated and CRC-checked after
    # torch read it.
    honest = _rezip(_save(tmp_path / 'small.pth', 'note'),
                    tmp_path / 'deflated.pth',
                    compression=zipfile.ZIP_DEFLATED)
    assert safe_torch_load(honest)['meta']['note'] == 'note'
    raw = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start, _ = _record_data(honest, 'data/0')
    with zipfile.ZipFile(honest) as archive:
        (info, ) = [i for i in archive.infolist()
                    if i.filename.endswith('data/0')]
    changed = raw.compress(b'\0' * info.file_size) + raw.flush()
    data = bytearray(honest.read_bytes())
    if len(changed) == info.compress_size:
        data[start:start + len(changed)] = changed
        honest.write_bytes(bytes(data))
        with pytest.raises(CorruptCheckpointError, match='CRC-32'):
            safe_torch_load(honest)


@pytest.mark.parametrize('value', ['0.5', 'many', '-1'])
def test_bad_expansion_setting(tmp_path: Path, value: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_EXPANSION_ENV, value)
    with pytest.raises(ValueError,
                       match=f'{MAX_EXPANSION_ENV}=.* must be a number >= 1'):
        safe_torch_load(_save(tmp_path / 'x.pth', 1))


# --- damaged files ----------------------------------------------------------


def test_truncated_checkpoint(trained: dict, tmp_path: Path) -> None:
    data = trained['ckpt'].read_bytes()
    path = tmp_path / 'epoch_3.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert str(path) in message
    assert 'truncated' in message
    assert 'previous checkpoint' in message
    assert '--resume' in message


@pytest.mark.parametrize('content', [b'', b'not a checkpoint\n',
                                     os.urandom(256)])
def test_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / 'junk.pth'
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError, match='junk.pth'):
        safe_torch_load(path)


def test_loaded_from_names_the_file_loaded_last(tmp_path: Path) -> None:
    """What after_load_checkpoint hooks use to name the file."""
    first = safe_torch_load(_save(tmp_path / 'a.pth', 1))
    second = safe_torch_load(_save(tmp_path / 'b.pth', 2))
    assert loaded_from(second) == str(tmp_path / 'b.pth')
    assert loaded_from(first) is None
    assert loaded_from(dict(second)) is None


# --- mmengine's API after install -------------------------------------------


def test_mmengine_api_uses_safe_loader(tmp_path: Path,
                                       installed: None) -> None:
    schemes = mmengine_checkpoint.CheckpointLoader._schemes
    assert schemes[''] is safe_ckpt.load_from_local_safe
    assert schemes['http://'] is safe_ckpt.load_from_http_safe
    assert schemes['https://'] is safe_ckpt.load_from_http_safe
    assert mmengine_checkpoint.load_from_http is safe_ckpt.load_from_http_safe
    install_safe_checkpoint_loader()  # idempotent
    assert mmengine_checkpoint.CheckpointLoader._schemes == schemes

    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'weight': torch.ones(2, 2),
                               'bias': torch.zeros(2)}}, good)
    model = torch.nn.Linear(2, 2)
    mmengine_checkpoint.load_checkpoint(model, str(good))
    assert torch.equal(model.weight, torch.ones(2, 2))

    marker = tmp_path / 'marker'
    evil = _save(tmp_path / 'evil.pth',
                 _Reduce(os.system, (f'touch {marker}', )))
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        mmengine_checkpoint._load_checkpoint(str(evil))
    with pytest.raises(UnsafeCheckpointError):
        mmengine_checkpoint.load_checkpoint(model, str(evil))
    assert not marker.exists()

    with pytest.raises(FileNotFoundError, match='can not be found'):
        mmengine_checkpoint._load_checkpoint(str(tmp_path / 'missing.pth'))


def test_download_path_is_weights_only(trained: dict,
                                       tmp_path: Path) -> None:
    # torch.hub downloads file:// URLs too, so the http loader can be
    # exercised offline. torch.hub itself defaults to weights_only=False.
    cache = tmp_path / 'hub'
    url = trained['ckpt'].as_uri()
    ckpt = safe_ckpt.load_from_http_safe(
        url, map_location='cpu', model_dir=str(cache), progress=False)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)

    marker = tmp_path / 'marker'
    evil = _save(tmp_path / 'evil_download.pth',
                 _Reduce(os.system, (f'touch {marker}', )))
    with pytest.raises(UnsafeCheckpointError, match='evil_download.pth'):
        safe_ckpt.load_from_http_safe(
            evil.as_uri(), model_dir=str(cache), progress=False)
    assert not marker.exists()
    assert osp.isfile(cache / 'evil_download.pth')
