"""Tests for mmsaol.compat.checkpoint (safe checkpoint loading).

A real mmengine training checkpoint is made once per module by a tiny CPU
Runner run (mmpretrain ImageClassifier, ResNet_CIFAR-18 with 8 channels,
mmpretrain CustomDataset on 16x16 PNG files), then loaded with the safe
loader, resumed from, and compared with crafted malicious files.
"""
from __future__ import annotations

import importlib
import os
import os.path as osp
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint

from mmsaol.compat import checkpoint as safe_ckpt
from mmsaol.compat.checkpoint import (
    SAFE_GLOBALS,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    install_safe_checkpoint_loader,
    safe_torch_load,
)


class _Reduce:
    """Pickles as ``fn(*args)``: the shape of a malicious checkpoint."""

    def __init__(self, fn: Any, args: tuple) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self) -> tuple:
        return self.fn, self.args

    def __call__(self, *args: Any) -> Any:
        # Only so that pickle accepts a _Reduce as the callable of another
        # _Reduce ("call the result of a call"); never called in the tests.
        raise AssertionError('not to be called')


def _runner_cfg(root: Path, work_dir: Path, name: str,
                max_epochs: int) -> dict:
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
                'type': 'CheckpointHook',
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
    """One real 1-epoch training run; returns its data root and checkpoint."""
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
    assert ckpt.is_file()
    return {'data': data, 'ckpt': ckpt, 'base': base}


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


def test_file_object_and_existing_safe_globals_kept(trained: dict) -> None:
    snapshot = torch.serialization.get_safe_globals()
    # Someone else allow-listed one of our entries for the whole process.
    assert HistoryBuffer in SAFE_GLOBALS
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        with open(trained['ckpt'], 'rb') as f:
            ckpt = safe_torch_load(f)
        assert 'message_hub' in ckpt
        # Our context manager must not remove it on exit.
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(snapshot)


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
    stand_in = {name: fn for fn, name in
                (g for g in SAFE_GLOBALS if isinstance(g, tuple))}
    with pytest.raises(pickle.UnpicklingError):
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
