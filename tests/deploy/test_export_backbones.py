"""Every shipped ImageNet config exports to ONNX (random weights) and runs in
ONNX Runtime as in PyTorch.

Each export traces a full-size backbone: 10-55 s per config, about 5 minutes
for all of them on a 2-core CPU, so this runs only when asked for
(``MMSAOL_TEST_EXPORTS=all python -m pytest tests/deploy/
test_export_backbones.py``); docs/deploy.md ("Deploy with ONNX") records the
last run. The demo models' exports run in every test run
(``test_export.py``).
"""
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmsaol.deploy import InferenceGraph, export_onnx, load_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*_imagenet.py')))
#: Input side per config: 64 px, or what the backbone needs at least.
#: Swin-T's 7x7 windows need a 7x7 last stage (224 px) unless the config
#: sets ``pad_small_map=True``.
INPUT_SIDE = {'swin-tiny_saol_imagenet.py': 224}
#: Random full-size networks give logits of order 10; their probabilities
#: and maps agree within this across the two runtimes' float32 kernels.
TOL = 1e-4



def test_every_imagenet_config_is_listed():
    assert len(CONFIGS) >= 12


@pytest.mark.skipif(
    os.environ.get('MMSAOL_TEST_EXPORTS') != 'all',
    reason='5 minutes of exports: set MMSAOL_TEST_EXPORTS=all to run')
@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_imagenet_config_exports(config, tmp_path):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxscript')
    pytest.importorskip('onnxruntime')
    from mmsaol.deploy.runtime import OnnxClassifier
    side = INPUT_SIDE.get(osp.basename(config), 64)
    # The same random weights in both: the same seed before each build.
    torch.manual_seed(0)
    exported = export_onnx(config, None, str(tmp_path / 'model.onnx'),
                           input_size=(side, side))
    session = OnnxClassifier(exported.path)
    torch.manual_seed(0)
    graph = InferenceGraph(load_model(config))
    images = torch.randint(0, 256, (3, 3, side, side),
                           generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8).float()
    with torch.no_grad():
        expected = dict(zip(graph.output_names, graph(images)))
    got = session(images.numpy())
    assert list(got) == list(graph.output_names)
    for name in ('probs', 'attention'):
        if name in got:
            np.testing.assert_allclose(got[name], expected[name], rtol=0,
                                       atol=TOL)
