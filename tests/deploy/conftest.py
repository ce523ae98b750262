"""Fixtures of the deploy tests: the demo models with random weights saved
as checkpoints, and demo canvases."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.apis import get_model

from mmsaol.compat.config import build_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSES = [f'digit {i}' for i in range(10)]


def demo_config(name: str) -> str:
    return osp.join(REPO, 'configs', f'{name}.py')


@pytest.fixture(scope='package')
def configs() -> dict:
    """Paths of the demo configs, by name."""
    return {name: demo_config(name) for name in ('saol_demo', 'gapfc_demo')}


@pytest.fixture(scope='package')
def checkpoints(tmp_path_factory):
    """``saol_demo`` and ``gapfc_demo`` with random weights, class names in
    the meta. The SAOL head's attention output conv (zero-initialised, i.e.
    uniform attention) gets random weights too, and the FC layers larger
    ones than their near-zero initialisation, so that every map varies over
    the positions and the top classes' probabilities are apart."""
    root = tmp_path_factory.mktemp('checkpoints')
    paths = {}
    for seed, name in enumerate(('saol_demo', 'gapfc_demo')):
        torch.manual_seed(seed)
        model = get_model(demo_config(name))
        model.init_weights()
        if name == 'saol_demo':
            torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
            torch.nn.init.normal_(model.head.gapfc.weight, std=0.5)
        else:
            torch.nn.init.normal_(model.head.fc.weight, std=0.5)
        paths[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict(),
                    'meta': {'dataset_meta': {'classes': CLASSES}}},
                   paths[name])
    return paths


@pytest.fixture(scope='package')
def canvases() -> torch.Tensor:
    """``(5, 3, 40, 40)`` uint8: the first demo validation canvases, as the
    test pipeline gives them to the data preprocessor."""
    dataset = build_split(Config.fromfile(demo_config('saol_demo')), 'val', 5)
    return torch.stack([dataset[i]['inputs'] for i in range(len(dataset))])


def export(args) -> 'object':
    """``mmsaol export-onnx ARGS`` in this process (skips the test when the
    deploy extra is not installed)."""
    for name in ('onnx', 'onnxruntime', 'onnxscript'):
        pytest.importorskip(name)
    from mmsaol.apis.export_onnx import main
    return main([str(a) for a in args])


@pytest.fixture(scope='package')
def saol_onnx(tmp_path_factory, configs, checkpoints):
    """The SAOL demo model exported with 3 class maps per image."""
    out = tmp_path_factory.mktemp('onnx') / 'saol_demo.onnx'
    return export([configs['saol_demo'], checkpoints['saol_demo'], out,
                   '--topk', 3])


@pytest.fixture(scope='package')
def gapfc_branch_onnx(tmp_path_factory, configs, checkpoints):
    """The SAOL demo model's GAP-FC branch, without normalisation in the
    graph, for a data preprocessor that flips BGR to RGB."""
    out = tmp_path_factory.mktemp('onnx') / 'saol_demo_gapfc.onnx'
    return export([configs['saol_demo'], checkpoints['saol_demo'], out,
                   '--head', 'gapfc', '--no-normalize', '--cfg-options',
                   'data_preprocessor.to_rgb=True'])
