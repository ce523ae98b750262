"""Hostile files, each built here, and the tiny configs the tools run.

Every builder writes one file (or folder) an attacker could hand a user: a
checkpoint whose pickle reduces to ``os.system`` (writing a marker file),
``meta['config']`` code, a numpy object dtype, a truncated or bomb zip,
NaN / integer-coded / sparse weights, hostile ONNX files (truncated,
unknown operator domain, external data outside the model folder, a huge
initialiser, a metadata pipeline naming ``os.system``, malformed metadata)
and hostile images (empty, a 50000x50000 header).
"""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

#: The tiny GAP-FC classifier (mmpretrain's own components).
GAPFC_MODEL = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=2, mean=[127.5] * 3,
                           std=[127.5] * 3),
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
#: The tiny SAOL classifier with distillation (export-gapfc needs it).
SAOL_MODEL = dict(
    type='SAOLClassifier',
    data_preprocessor=dict(num_classes=2, mean=[127.5] * 3,
                           std=[127.5] * 3),
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8, out_indices=(1, 2, 3)),
    neck=None,
    head=dict(type='SAOLHead', num_classes=2, in_channels=(16, 32, 64),
              channels=8, loss=dict(type='CrossEntropyLoss', use_soft=True),
              distillation=dict()))


class Payload:
    """Pickles as ``os.system(command)``: what a malicious checkpoint
    holds."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command, )


def write_images(folder: Path, count: int = 2) -> Path:
    """``folder/<class>/<i>.png``: 16x16 images of two classes."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in ('a', 'b'):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3),
                                         dtype=np.uint8)).save(
                folder / cls / f'{i}.png')
    return folder


def write_config(path: Path, data: Path, work_dir: Path,
                 model: dict) -> Path:
    """A complete tiny config file (train, val, test) for ``model``."""
    loader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        dataset=dict(type='CustomDataset', data_root=str(data),
                     serialize_data=False,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='PackInputs')]),
        sampler=dict(type='DefaultSampler', shuffle=False))
    cfg = Config(dict(
        custom_imports=dict(imports=['mmsaol'], allow_failed_imports=False),
        default_scope='mmpretrain', model=model, work_dir=str(work_dir),
        train_dataloader=loader, val_dataloader=loader,
        test_dataloader=loader,
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        val_cfg=dict(), test_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        log_level='ERROR'))
    cfg.dump(str(path))
    return path


def weights(model_cfg: dict) -> Dict[str, torch.Tensor]:
    """A freshly initialised state dict of ``model_cfg``."""
    torch.manual_seed(0)
    return MODELS.build(dict(model_cfg)).state_dict()


def first_float_key(state: Dict[str, torch.Tensor]) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


# ----------------------------------------------------------- checkpoints
def payload_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint whose state dict holds ``os.system('touch marker')``."""
    torch.save({'state_dict': {'w': Payload(f'touch {marker}')}}, path)
    return path


def meta_config_checkpoint(path: Path, state: dict, marker: Path,
                           victim: Path, epochs: int = 1) -> Path:
    """Usable weights with ``meta['config']`` code writing the marker and a
    message hub naming ``victim`` as the best checkpoint (deleted by
    mmengine's checkpoint hook), at the end of training."""
    code = f"import os\nos.system('touch {marker}')\n"
    torch.save({
        'state_dict': state,
        'meta': {'config': code, 'cfg': code, 'epoch': epochs,
                 'iter': 2 * epochs, 'seed': 0},
        'message_hub': {'log_scalars': {}, 'resumed_keys': {},
                        'runtime_info': {'best_ckpt': str(victim),
                                         'keep_ckpt_ids': [str(victim)]}},
    }, path)
    return path


def object_dtype_checkpoint(path: Path, state: dict) -> Path:
    """Usable weights plus a numpy array of Python objects (a dtype outside
    the allow-list) in the meta."""
    torch.save({'state_dict': state,
                'meta': {'x': np.array([print], dtype=object)}}, path)
    return path


def truncated_checkpoint(path: Path, state: dict) -> Path:
    """A checkpoint cut in half (a kill while saving)."""
    buffer = io.BytesIO()
    torch.save({'state_dict': state}, buffer)
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    return path


def zip_bomb(path: Path, records: int = 64,
             size: int = 64 * 2**20) -> Path:
    """A zip whose central directory lists one deflated record of ``size``
    zero bytes ``records`` times (``records * size`` declared, about
    ``size / 1000`` stored)."""
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    stored = data.compress(bytes(size)) + data.flush()
    crc = zlib.crc32(bytes(size))
    name = b'archive/data.pkl'
    local = struct.pack('<4sHHHHHIIIHH', b'PK\x03\x04', 20, 0, 8, 0, 0,
                        crc, len(stored), size, len(name), 0) + name
    central = b''
    for i in range(records):
        entry = name + str(i).encode()
        central += struct.pack('<4sHHHHHHIIIHHHHHII', b'PK\x01\x02', 20,
                               20, 0, 8, 0, 0, crc, len(stored), size,
                               len(entry), 0, 0, 0, 0, 0, 0) + entry
    offset = len(local) + len(stored)
    end = struct.pack('<4sHHHHIIH', b'PK\x05\x06', 0, 0, records, records,
                      len(central), offset, 0)
    path.write_bytes(local + stored + central + end)
    return path


def tampered_checkpoint(path: Path, state: dict,
                        change: Callable[[torch.Tensor], object]) -> Path:
    """``state`` with its first float weight replaced by ``change(w)``."""
    state = dict(state)
    key = first_float_key(state)
    state[key] = change(state[key])
    torch.save({'state_dict': state}, path)
    return path


def nan_weights(path: Path, state: dict) -> Path:
    return tampered_checkpoint(
        path, state, lambda w: torch.full_like(w, float('nan')))


def int8_weights(path: Path, state: dict) -> Path:
    return tampered_checkpoint(path, state,
                               lambda w: w.mul(100).to(torch.int8))


def sparse_weights(path: Path, state: dict) -> Path:
    return tampered_checkpoint(path, state, lambda w: w.to_sparse())


def odd_checkpoint(path: Path, value: object) -> Path:
    """A checkpoint that is ``value`` (an int, a list, None, a dict with an
    int key) instead of a state dict."""
    torch.save(value, path)
    return path


def hostile_checkpoints(root: Path, state: dict, marker: Path,
                        victim: Path) -> Dict[str, Path]:
    """Every hostile checkpoint of the red team, by name."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / 'folder.pth'
    folder.mkdir(exist_ok=True)
    return {
        'pickle_payload': payload_checkpoint(root / 'payload.pth', marker),
        'meta_config': meta_config_checkpoint(root / 'meta_config.pth',
                                              state, marker, victim),
        'object_dtype': object_dtype_checkpoint(root / 'dtype.pth', state),
        'truncated_zip': truncated_checkpoint(root / 'truncated.pth', state),
        'zip_bomb': zip_bomb(root / 'bomb.pth', records=64, size=2**20),
        'nan_weights': nan_weights(root / 'nan.pth', state),
        'int8_weights': int8_weights(root / 'int8.pth', state),
        'sparse_weight': sparse_weights(root / 'sparse.pth', state),
        'odd_state_dict': odd_checkpoint(root / 'odd.pth',
                                         {'state_dict': {3: 1}}),
        'directory': folder,
    }


# ------------------------------------------------------------ ONNX files
def onnx_model(metadata: Optional[Dict[str, str]] = None,
               initializer=None, node=None) -> bytes:
    """A tiny ONNX classifier in mmsaol's export format ('gapfc': input
    ``inputs`` (N, 3, 16, 16), output ``probs`` (N, 3)), with the mmsaol
    metadata (``metadata`` entries replace or add fields)."""
    from onnx import TensorProto, helper
    fields = dict(mmsaol_version='0', outputs='gapfc', classes=['a', 'b',
                                                                'c'],
                  input_size=[16, 16], normalize_in_graph=True,
                  to_rgb=False, mean=None, std=None, topk=2,
                  test_pipeline=[dict(type='PackInputs')], config='x.py')
    props = {k: json.dumps(v) for k, v in fields.items()}
    props.update(metadata or {})
    nodes = [helper.make_node('ReduceMean', ['inputs'], ['pooled'],
                              axes=[2, 3], keepdims=0),
             helper.make_node('Softmax', ['pooled'], ['probs'], axis=1)]
    if initializer is not None:  # used, so that the runtime reads it
        nodes[1:] = [helper.make_node('Add', ['pooled', 'w'], ['shifted']),
                     helper.make_node('Softmax', ['shifted'], ['probs'],
                                      axis=1)]
    if node is not None:
        nodes.insert(0, node)
    graph = helper.make_graph(
        nodes, 'tiny',
        [helper.make_tensor_value_info('inputs', TensorProto.FLOAT,
                                       ['N', 3, 16, 16])],
        [helper.make_tensor_value_info('probs', TensorProto.FLOAT,
                                       ['N', 3])],
        initializer=[initializer] if initializer is not None else [])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid('', 17)], ir_version=8)
    helper.set_model_props(model, props)
    return model.SerializeToString()


def hostile_onnx_files(root: Path, marker: Path) -> Dict[str, Path]:
    """Every hostile ONNX file of the red team, by name."""
    from onnx import TensorProto, helper
    root.mkdir(parents=True, exist_ok=True)
    good = onnx_model()
    outside = helper.make_tensor('w', TensorProto.FLOAT, [3], [0.0] * 3)
    outside.ClearField('float_data')
    outside.data_location = TensorProto.EXTERNAL
    for key, value in (('location', '../../../../etc/passwd'),
                       ('offset', '0'), ('length', '12')):
        entry = outside.external_data.add()
        entry.key, entry.value = key, value
    huge = TensorProto(name='w', data_type=TensorProto.FLOAT,
                       dims=[2**30, 3], raw_data=b'\0' * 16)
    files = {
        'onnx_truncated': good[:len(good) // 2],
        'onnx_empty': b'',
        'onnx_unknown_domain': onnx_model(node=helper.make_node(
            'Evil', ['inputs'], ['unused'], domain='com.evil')),
        'onnx_external_outside': onnx_model(initializer=outside),
        'onnx_huge_initializer': onnx_model(initializer=huge),
        'onnx_pipeline_os_system': onnx_model({'test_pipeline': json.dumps(
            [dict(type='os.system', command=f'touch {marker}')])}),
        'onnx_pipeline_nested': onnx_model({'test_pipeline': json.dumps(
            [dict(type='RandomApply', transforms=[dict(
                type='os.system', command=f'touch {marker}')])])}),
        'onnx_metadata_not_json': onnx_model({'classes': '[a, b'}),
        'onnx_input_size_zero': onnx_model({'input_size': '[0, 0]'}),
        'onnx_classes_not_list': onnx_model({'classes': '"abc"'}),
        'onnx_pipeline_dict': onnx_model(
            {'test_pipeline': json.dumps(dict(type='PackInputs'))}),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / f'{name}.onnx'
        paths[name].write_bytes(data)
    return paths


# ----------------------------------------------------------------- images
def empty_image(path: Path) -> Path:
    path.write_bytes(b'')
    return path


def huge_header_png(path: Path, side: int = 50000) -> Path:
    """A PNG whose header claims ``side`` x ``side`` RGB pixels (a few
    bytes of data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack(
            '>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
                     chunk(b'IDAT', zlib.compress(b'\0' * 64)) +
                     chunk(b'IEND', b''))
    return path


def hostile_study(path: Path, config: Path, **changes) -> Path:
    """A study file with one variant of ``config``; ``changes`` replace
    its fields (``name``, ``options``)."""
    variant = dict(name='v', config=str(config),
                   options=changes.pop('options', []))
    path.write_text(json.dumps(dict(name=changes.pop('name', 'red'),
                                    variants=[variant], seeds=[0])))
    return path


def tree_snapshot(root: Path) -> Dict[str, int]:
    """Every file under ``root`` with its size (to see deletions)."""
    return {str(p): p.stat().st_size for p in root.rglob('*') if p.is_file()}


def zip_records(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return len(archive.infolist())
