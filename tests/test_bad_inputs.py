"""Bad configs and bad inputs, table-driven.

Each case either works and gives the right result, or fails fast with a
message that names the field or file and the fix. Every failing case is a
row of :mod:`mmsaol.troubleshooting` (the docs' "Troubleshooting"), and
the test checks that the row quotes the message really printed.

Cases marked xfail describe a message that the named file does not give
yet (today the user gets an unclear error or a silent wrong result).
Most cases build the model, data set or loader directly; three run the
command-line tools.
"""
from __future__ import annotations

import glob
import io
import logging
import os
import os.path as osp
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Type

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner, load_checkpoint
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample
from PIL import Image

from mmsaol.compat.checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from mmsaol.datasets import UnreadableImageError
from mmsaol.engine import AtomicCheckpointHook, CheckpointMismatchError
from mmsaol.troubleshooting import (
    PROBLEMS,
    match,
    problem,
    render_markdown,
    render_table,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# A tiny SAOL model as the demo builds it: 8-wide CIFAR ResNet-18, SAOL on
# stages 2-4, self-supervision, distillation, GeometryCutMix.
MODEL = dict(
    type='SAOLClassifier',
    data_preprocessor=dict(num_classes=4, mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8, out_indices=(1, 2, 3)),
    neck=None,
    head=dict(type='SAOLHead', num_classes=4, in_channels=(16, 32, 64),
              channels=8, loss=dict(type='CrossEntropyLoss', use_soft=True),
              self_supervision=dict(target='self'), distillation=dict()),
    train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0)))


def model_cfg(drop: tuple = (), **changes) -> dict:
    """MODEL with dotted-key ``changes`` (as --cfg-options) applied and the
    dotted keys in ``drop`` removed."""
    cfg = Config(dict(model=MODEL))
    cfg.merge_from_dict({f'model.{k}': v for k, v in changes.items()})
    for key in drop:
        *parents, last = key.split('.')
        node = cfg.model
        for name in parents:
            node = node[name]
        del node[last]
    return cfg.to_dict()['model']


def batch(n: int = 4, channels: int = 3, h: int = 16, w: int = 16,
          labels=None) -> dict:
    g = torch.Generator().manual_seed(0)
    labels = [i % 4 for i in range(n)] if labels is None else labels
    return dict(
        inputs=[torch.randint(0, 256, (channels, h, w), generator=g,
                              dtype=torch.uint8) for _ in range(n)],
        data_samples=[DataSample().set_gt_label(y) for y in labels])


def train_step(cfg: dict, **batch_kw) -> Dict[str, float]:
    """One training forward: the losses of a batch."""
    torch.manual_seed(0)
    model = MODELS.build(cfg).train()
    data = model.data_preprocessor(batch(**batch_kw), True)
    return {k: float(v) for k, v in model(**data, mode='loss').items()}


def predict(model, **batch_kw):
    model.eval()
    data = model.data_preprocessor(batch(**batch_kw), False)
    return model.predict(data['inputs'], data['data_samples'],
                         with_maps=True)


# ------------------------------------------------------- cases that work
def works_batch_size_1(tmp_path: Path) -> None:
    losses = train_step(MODEL, n=1)
    assert set(losses) == {'loss_cls', 'loss_gapfc', 'loss_distill',
                           'loss_spatial', 'loss_attention'}
    assert all(np.isfinite(v) for v in losses.values())
    (sample, ) = predict(MODELS.build(MODEL), n=1)
    assert torch.isclose(sample.pred_score.sum(), torch.tensor(1.0))


def works_1x1_feature_maps(tmp_path: Path) -> None:
    """8x8 inputs give a 1x1 last map: the attention is 1 and y is the
    spatial posterior of that one location."""
    assert all(np.isfinite(v) for v in train_step(MODEL, h=8, w=8).values())
    model = MODELS.build(MODEL).eval()
    samples = predict(model, h=8, w=8)
    assert all(s.attention_map.shape == (1, 1) for s in samples)
    assert all(float(s.attention_map) == 1.0 for s in samples)
    data = model.data_preprocessor(batch(h=8, w=8), False)
    out = model.head.saol_outputs(model.extract_feat(data['inputs']))
    torch.testing.assert_close(out.log_probs, out.log_spatial[:, :, 0, 0])


def works_non_square_inputs(tmp_path: Path) -> None:
    assert all(np.isfinite(v)
               for v in train_step(MODEL, h=16, w=40).values())
    samples = predict(MODELS.build(MODEL), h=16, w=40)
    for s in samples:
        assert s.attention_map.shape == (2, 5)  # stride 8
        assert torch.isclose(s.attention_map.sum(), torch.tensor(1.0))
        assert s.class_maps.shape == (2, 2, 5)


def works_grayscale_with_normalisation(tmp_path: Path) -> None:
    """A 1-channel image is broadcast to 3 equal channels by the 3-value
    mean/std: the same prediction as the image converted to RGB."""
    model = MODELS.build(MODEL).eval()
    gray = batch(channels=1)
    rgb = dict(inputs=[x.expand(3, -1, -1) for x in gray['inputs']],
               data_samples=gray['data_samples'])
    scores = [torch.stack([s.pred_score for s in model(
        **model.data_preprocessor(b, False), mode='predict')])
        for b in (gray, rgb)]
    torch.testing.assert_close(scores[0], scores[1])


# ----------------------------------------------------- cases that fail
def saved_weights(path: Path, **changes) -> Path:
    model = MODELS.build(model_cfg(**changes))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def runner_with(tmp_path: Path, **kwargs) -> Runner:
    """A Runner around the tiny model, for checkpoint loading."""
    return Runner(model=MODEL, work_dir=str(tmp_path / 'work'),
                  default_scope='mmpretrain', **kwargs)


def load_truncated_checkpoint(tmp_path: Path) -> None:
    path = saved_weights(tmp_path / 'epoch_3.pth')
    path.write_bytes(path.read_bytes()[:2000])
    load_checkpoint(MODELS.build(MODEL), str(path))


class Exploit:
    """Unpickling this object runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def load_bit_flipped_checkpoint(tmp_path: Path) -> None:
    """One bit flipped in the middle of the largest tensor record."""
    path = saved_weights(tmp_path / 'epoch_2.pth')
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack(
        '<HH', data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length +
         info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    load_checkpoint(MODELS.build(MODEL), str(path))


def load_oversized_checkpoint(tmp_path: Path) -> None:
    """16 MiB of zeros deflated into a file of about 16 KiB."""
    stored = tmp_path / 'stored.pth'
    torch.save({'state_dict': {'w': torch.zeros(1 << 22)}}, stored)
    with zipfile.ZipFile(stored) as zin, zipfile.ZipFile(
            tmp_path / 'zeros.pth', 'w', zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    load_checkpoint(MODELS.build(MODEL), str(tmp_path / 'zeros.pth'))


def evaluate_checkpoint_with_nan_weights(tmp_path: Path) -> None:
    model = MODELS.build(MODEL)
    path = tmp_path / 'nan.pth'
    torch.save({'state_dict': {
        k: torch.full_like(v, float('nan')) if v.is_floating_point() else v
        for k, v in model.state_dict().items()}, 'meta': {}}, path)
    runner = runner_with(tmp_path,
                         custom_hooks=[dict(type='CheckpointMatchHook')])
    runner.load_checkpoint(str(path))


def load_malicious_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Exploit(tmp_path / 'pwned')}, path)
    try:
        load_checkpoint(MODELS.build(MODEL), str(path))
    finally:
        assert not (tmp_path / 'pwned').exists()


def load_checkpoint_of_another_config(tmp_path: Path) -> None:
    path = saved_weights(tmp_path / 'wide.pth', **{
        'backbone.stem_channels': 16, 'backbone.base_channels': 16,
        'head.in_channels': (32, 64, 128)})
    runner = runner_with(tmp_path,
                         custom_hooks=[dict(type='CheckpointMatchHook')])
    runner.load_checkpoint(str(path))


def evaluate_checkpoint_with_other_num_classes(tmp_path: Path) -> None:
    path = saved_weights(tmp_path / 'k10.pth', **{
        'head.num_classes': 10, 'data_preprocessor.num_classes': 10})
    runner = runner_with(tmp_path,
                         custom_hooks=[dict(type='CheckpointMatchHook')])
    runner.load_checkpoint(str(path))


def resume_when_last_checkpoint_is_gone(tmp_path: Path) -> None:
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_4.pth'))
    runner = runner_with(tmp_path, resume=True, default_hooks=dict(
        checkpoint=dict(type='AtomicCheckpointHook', interval=1)))
    (hook, ) = [h for h in runner.hooks
                if isinstance(h, AtomicCheckpointHook)]
    hook.before_run(runner)


def export_without_gapfc_branch(tmp_path: Path) -> None:
    export = pytest.importorskip('mmsaol.apis.export_gapfc')
    path = saved_weights(tmp_path / 'no_branch.pth',
                         **{'head.distillation': None})
    export.export_gapfc(osp.join(REPO, 'configs', 'saol_demo.py'),
                        str(path), str(tmp_path / 'out'))


def custom_dataset(tmp_path: Path, files: Dict[str, bytes]):
    for name, data in files.items():
        (tmp_path / 'data' / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / 'data' / name).write_bytes(data)
    (tmp_path / 'data').mkdir(exist_ok=True)
    return DATASETS.build(dict(
        type='CustomDataset', data_root=str(tmp_path / 'data'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))


def image_bytes(suffix: str) -> bytes:
    """A 16x16 black image in the format of ``suffix`` (``.png``)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(
        buffer, format={'.png': 'PNG', '.jpg': 'JPEG'}[suffix])
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))

    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0,
                                       0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


def read_images(files: Dict[str, bytes]) -> Callable[[Path], None]:
    """Load every image of a CustomDataset folder holding ``files`` (and
    a good ``cat/good.png``) through the stock pipeline."""

    def run(tmp_path: Path) -> None:
        dataset = custom_dataset(
            tmp_path, {'cat/good.png': image_bytes('.png'), **files})
        for i in range(len(dataset)):
            dataset[i]

    return run


@dataclass
class Case:
    """One bad input.

    Attributes:
        run: does the bad thing (or the good thing, for ``key=None``).
        key: the troubleshooting row of the message; None: it must work.
        error: the exception type expected.
        match: regex the message must match (names field/file and fix).
        todo: for a message not given yet: which file should give it.
    """

    run: Callable[[Path], object]
    key: Optional[str] = None
    error: Type[BaseException] = ValueError
    match: str = ''
    todo: Optional[str] = None


def _build(**changes) -> Callable[[Path], object]:
    return lambda tmp_path: MODELS.build(model_cfg(**changes))


def _step(drop: tuple = (), batch_kw: Optional[dict] = None,
          **changes) -> Callable[[Path], object]:
    return lambda tmp_path: train_step(model_cfg(drop, **changes),
                                       **(batch_kw or {}))


CASES: Dict[str, Case] = {
    # ------------------------------------------------------------- model
    'wrong in_channels': Case(
        _step(**{'head.in_channels': (32, 64, 128)}), 'in_channels',
        match=r'head\.in_channels=\(32, 64, 128\) .*Set '
        r'head\.in_channels=\(16, 32, 64\)'),
    'out_indices of other stages': Case(
        _step(**{'backbone.out_indices': (0, 1, 2)}), 'in_channels',
        match=r'Set head\.in_channels=\(8, 16, 32\)'),
    'out_indices missing': Case(
        _step(drop=('backbone.out_indices', )), 'out_indices',
        match=r'received 1 feature maps .*head\.in_channels=\(64,\)'),
    'misspelt head option': Case(
        _build(**{'head.self_supervison': dict(target='self')}),
        'unknown_option',
        match=r"SAOLHead has no option 'self_supervison' \(did you mean "
        r"'self_supervision'\?\)\. Its options are: "),
    'out_indices out of range': Case(
        _build(**{'backbone.out_indices': (1, 2, 4)}), 'out_indices_range',
        match=r'backbone\.out_indices=\(1, 2, 4\) names a stage the '
        r'backbone does not have: ResNet_CIFAR here has 4 stages, '
        r'indices 0-3\. Use e\.g\. backbone\.out_indices=\(1, 2, 3\)'),
    'num_classes: preprocessor vs head': Case(
        _step(**{'data_preprocessor.num_classes': 10}), 'num_classes',
        match=r'10-class scores but head\.num_classes=4'),
    'label out of range (no batch augment)': Case(
        _step(batch_kw=dict(labels=[7, 1, 2, 3]), train_cfg=None,
              **{'head.self_supervision': None}), 'num_classes',
        match=r'label is 7 but head\.num_classes=4; set model\.head\.'
        r'num_classes'),
    'label out of range (CutMix)': Case(
        _step(batch_kw=dict(labels=[7, 1, 2, 3])), 'num_classes',
        match=r'label is 7 but data_preprocessor\.num_classes=4; set '
        r'data_preprocessor\.num_classes and model\.head\.num_classes'),
    'GAP neck with SAOL': Case(
        _step(neck=dict(_delete_=True, type='GlobalAveragePooling')), 'neck',
        match=r'needs \(N, C, H, W\) feature maps, but input 0 .*\(4, 16\)'),
    'self-supervision with plain CutMix': Case(
        _build(train_cfg=dict(augments=dict(type='CutMix', alpha=1.0))),
        'no_geometry_cutmix', match=r"head\.self_supervision is set but "
        r"model\.train_cfg\.augments has no GeometryCutMix.*"
        r"type='GeometryCutMix'"),
    'self-supervision without batch augment': Case(
        _build(train_cfg=None), 'no_geometry_cutmix',
        match=r'or set head\.self_supervision=None'),
    'self-supervision with ClsDataPreprocessor': Case(
        _build(**{'data_preprocessor.type': 'ClsDataPreprocessor'}),
        'preprocessor', match=r"set it to 'SAOLDataPreprocessor' \(got "
        r'ClsDataPreprocessor\)'),
    'self-supervision with plain ImageClassifier': Case(
        _step(type='ImageClassifier',
              **{'data_preprocessor.type': 'ClsDataPreprocessor'}),
        'image_classifier',
        match=r"head\.self_supervision needs model\.type='SAOLClassifier'"),
    'self-supervision target unknown': Case(
        _build(**{'head.self_supervision': dict(target='boxes')}),
        'self_supervision_target', match=r"got 'boxes'"),
    "test_output='gapfc' without distillation": Case(
        _build(**{'head.test_output': 'gapfc', 'head.distillation': None}),
        'gapfc_without_distillation', match=r"or test_output='saol'"),
    'GeometryCutMix alpha=0': Case(
        _build(train_cfg=dict(augments=dict(type='GeometryCutMix',
                                            alpha=0))),
        'cutmix_alpha', match=r'got 0; e\.g\. .*alpha=1\.0'),
    "GeometryCutMix alpha='1.0'": Case(
        _build(train_cfg=dict(augments=dict(type='GeometryCutMix',
                                            alpha='1.0'))),
        'cutmix_alpha', match=r"got '1\.0'"),
    # ------------------------------------------------------------ inputs
    'batch size 1': Case(works_batch_size_1),
    '1x1 feature maps': Case(works_1x1_feature_maps),
    '1x1 feature maps, batch size 1': Case(
        _step(batch_kw=dict(n=1, h=8, w=8)), 'single_value_batch_norm',
        match=r'got input size torch\.Size\(\[1, 64, 1, 1\]\)'),
    'non-square inputs': Case(works_non_square_inputs),
    'grayscale inputs': Case(works_grayscale_with_normalisation),
    'grayscale inputs without normalisation': Case(
        _step(batch_kw=dict(channels=1), **{
            'data_preprocessor.mean': None, 'data_preprocessor.std': None}),
        'channels', error=RuntimeError,
        match=r'expected input\[4, 1, 16, 16\] to have 3 channels'),
    # --------------------------------------------------------- data sets
    'empty image folder': Case(
        lambda tmp_path: custom_dataset(tmp_path, {}), 'empty_dataset',
        error=RuntimeError, match=r'Found 0 files in subfolders of: .*data'),
    'empty demo data set': Case(
        lambda tmp_path: DATASETS.build(dict(type='DigitsCanvas',
                                             indices=0)),
        'empty_dataset',
        match=r"DigitsCanvas\(split='train'\): indices=0 selects no image"),
    'unreadable image': Case(
        read_images({'dog/broken.jpg': image_bytes('.jpg')[:40]}),
        'unreadable_image', error=UnreadableImageError,
        match=r"^Cannot read image '.*dog/broken\.jpg': it cannot be decoded "
        r'as an image \(the decoder returned nothing\); replace it or '
        r'delete it'),
    'empty image file': Case(
        read_images({'dog/empty.png': b''}), 'unreadable_image',
        error=UnreadableImageError,
        match=r"^Cannot read image '.*dog/empty\.png': the file is empty "
        r'\(0 bytes\); replace it'),
    'image header claiming 50000x50000': Case(
        read_images({'dog/huge.png': png_header(50000, 50000)}),
        'huge_image', error=UnreadableImageError,
        match=r"^Cannot read image '.*dog/huge\.png': its header claims more "
        r'than the 2\^30 pixels OpenCV decodes .*OPENCV_IO_MAX_IMAGE_PIXELS'),
    # ------------------------------------------------------- checkpoints
    'truncated checkpoint': Case(
        load_truncated_checkpoint, 'corrupt_checkpoint',
        error=CorruptCheckpointError,
        match=r"Cannot read checkpoint '.*epoch_3\.pth': .*Use the "
        r'previous checkpoint'),
    'checkpoint with a flipped bit': Case(
        load_bit_flipped_checkpoint, 'corrupt_checkpoint',
        error=CorruptCheckpointError,
        match=r"Cannot read checkpoint '.*epoch_2\.pth': .*record "
        r"'epoch_2/data/\d+' fails its CRC-32 check"),
    'checkpoint inflating to 1000x its size': Case(
        load_oversized_checkpoint, 'oversized_checkpoint',
        error=UnsafeCheckpointError,
        match=r"Refused to load checkpoint '.*zeros\.pth': its records "
        r"declare 16\.0 MiB, \d+ times the file's size .*set "
        r'MMSAOL_CHECKPOINT_MAX_EXPANSION=\d+ or more'),
    'checkpoint with NaN weights, evaluated': Case(
        evaluate_checkpoint_with_nan_weights, 'checkpoint_values',
        error=CheckpointMismatchError,
        match=r"The checkpoint '.*nan\.pth' does not hold usable values: "
        r'backbone\.conv1\.weight holds 216 of 216 values that are NaN'),
    'malicious checkpoint': Case(
        load_malicious_checkpoint, 'unsafe_checkpoint',
        error=UnsafeCheckpointError,
        match=r"Refused to load checkpoint '.*evil\.pth': it needs "
        r'(posix|os)\.system'),
    'checkpoint of another config': Case(
        load_checkpoint_of_another_config, 'checkpoint_mismatch',
        error=CheckpointMismatchError,
        match=r'backbone\.conv1\.weight: model \(8, 3, 3, 3\) vs '
        r"checkpoint \(16, 3, 3, 3\).*meta\['cfg'\]"),
    'checkpoint with other num_classes, evaluated': Case(
        evaluate_checkpoint_with_other_num_classes, 'checkpoint_mismatch',
        error=CheckpointMismatchError,
        match=r'head\.spatial_cls\.weight: model \(4, 24, 1, 1\) vs '
        r'checkpoint \(10, 24, 1, 1\).*Refusing to evaluate'),
    '--resume when last_checkpoint names a missing file': Case(
        resume_when_last_checkpoint_is_gone, 'resume_without_checkpoint',
        error=FileNotFoundError,
        match=r"names '.*epoch_4\.pth', but it does not exist.*--resume "
        r'PATH'),
    'GAP-FC export of a checkpoint without the branch': Case(
        export_without_gapfc_branch, 'export_without_gapfc',
        match=r"missing \['head\.gapfc\.weight', 'head\.gapfc\.bias'\].*"
        r'model\.head\.distillation=dict\(\)'),
}


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason=f'wanted message, to be raised by {case.todo}'))
    if case.todo else name for name, case in CASES.items()])
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    if case.key is None:
        case.run(tmp_path)
        return
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    message = str(info.value)
    assert re.search(case.match, message, flags=re.S), message
    quoted = problem(case.key).messages
    assert any(text in message for text in quoted), (quoted, message)


def test_empty_class_folder_warns(tmp_path: Path) -> None:
    """An empty class folder silently became a class; upstream's warning
    gives the folder's name only."""
    (tmp_path / 'data' / 'dog').mkdir(parents=True)
    records: list = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        dataset = custom_dataset(tmp_path,
                                 {'cat/good.png': image_bytes('.png')})
    finally:
        logger.removeHandler(handler)
    assert dataset.metainfo['classes'] == ('cat', 'dog')
    folder = re.escape(str(tmp_path / 'data' / 'dog'))
    (message, ) = [r.getMessage() for r in records
                   if 'Class folder' in r.getMessage()]
    assert re.search(rf"^Class folder '{folder}' holds no image file \(.*"
                     r"\.png.*\), but it still counts as class 1 \('dog'\) "
                     r'of 2: delete the folder, or add its images\.$',
                     message), message
    assert any(text in message
               for text in problem('empty_class_folder').messages)


# ------------------------------------------------------ command line
CLI_CASES = {
    'unknown --launcher': (
        ['train.py', 'configs/saol_demo.py', '--launcher', 'gloo'],
        'launcher', r"argument --launcher: invalid choice: 'gloo'"),
    '--launcher pytorch without torchrun': (
        ['train.py', 'configs/saol_demo.py', '--launcher', 'pytorch'],
        'launcher', r"needs the environment variables \['RANK', "
        r"'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'\]; start the job with "
        r'tools/dist_train\.sh'),
    'tools/test.py with a truncated checkpoint': (
        ['test.py', 'configs/saol_demo.py', '{tmp}/epoch_8.pth'],
        'corrupt_checkpoint', r"Cannot read checkpoint '.*epoch_8\.pth'"),
}


@pytest.fixture(scope='module')
def cli_results(tmp_path_factory: pytest.TempPathFactory
                ) -> Dict[str, subprocess.CompletedProcess]:
    """Runs all command-line cases at once (each starts in ~10 s)."""
    tmp = tmp_path_factory.mktemp('cli')
    saved_weights(tmp / 'epoch_8.pth')
    (tmp / 'epoch_8.pth').write_bytes((tmp / 'epoch_8.pth').read_bytes()
                                      [:3000])
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT',
                        'LOCAL_RANK')}
    procs = {}
    for name, (args, _, _) in CLI_CASES.items():
        tool, *rest = [a.format(tmp=tmp) for a in args]
        procs[name] = subprocess.Popen(
            [sys.executable, osp.join('tools', tool), *rest, '--work-dir',
             str(tmp / 'work')], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(proc.args,
                                                    proc.returncode, out)
    return results


ON_CPU_HOST = pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="with CUDA, mmengine's own init_dist handles --launcher")


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=ON_CPU_HOST) if 'pytorch' in name else name
    for name in CLI_CASES])
def test_cli_bad_input(name: str, cli_results) -> None:
    _, key, match = CLI_CASES[name]
    result = cli_results[name]
    assert result.returncode != 0
    assert re.search(match, result.stdout), result.stdout[-3000:]
    assert any(text in result.stdout for text in problem(key).messages)


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=ON_CPU_HOST) if 'pytorch' in name else name
    for name in CLI_CASES])
def test_cli_user_error_has_no_traceback(name: str, cli_results) -> None:
    assert 'Traceback' not in cli_results[name].stdout


# ------------------------------------------ the docs' troubleshooting table
def test_every_row_is_produced_by_a_test() -> None:
    """No troubleshooting row without a test that produces its message: a case
    here, a test here or in tests/engine that compares with the row
    (``problem('<key>')``)."""
    keys = {case.key for case in CASES.values()}
    keys |= {key for _, key, _ in CLI_CASES.values()}
    for path in [__file__, *glob.glob(
            osp.join(REPO, 'tests', 'engine', 'test_*.py'))]:
        with open(path) as f:
            keys |= set(re.findall(r"problem\('(\w+)'\)", f.read()))
    assert keys - {None} == {row.key for row in PROBLEMS}


def test_match_finds_the_row_of_a_message() -> None:
    """The docs page "Troubleshooting" is rendered from these rows
    (tests/test_docs.py); ``match`` finds a row from a printed message."""
    for row in PROBLEMS:
        assert match(f'x: error: {row.messages[-1]} (detail).') is not None
    assert match('a message no row quotes') is None


def test_rendered_table() -> None:
    text = render_markdown()
    assert text.startswith('## Troubleshooting\n')
    rows = [line for line in text.splitlines() if line.startswith('| `')]
    assert len(rows) == len(PROBLEMS)
    assert all(line.count(' | ') == 2 for line in rows)
    assert text.endswith(render_table())
