"""tools/eval_wsol.py on the demo validation split."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmpretrain.apis import get_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KEYS = {'accuracy/top1', 'wsol/gt_known_loc', 'wsol/top1_loc',
        'wsol/max_box_acc', 'wsol/max_box_acc_thr', 'wsol/max_box_acc_iou30',
        'wsol/max_box_acc_iou50', 'wsol/max_box_acc_iou70',
        'wsol/max_box_acc_v2', 'wsol/peak_in_box'}


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'eval_wsol', osp.join(REPO, 'tools', 'eval_wsol.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('config,source', [('saol_demo', 'attention'),
                                           ('gapfc_demo', 'cam')])
def test_eval_wsol_writes_metrics(tmp_path, config, source):
    model = get_model(osp.join(REPO, 'configs', f'{config}.py'))
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    out = tmp_path / 'metrics.json'
    metrics = load_tool().main([
        f'configs/{config}.py', checkpoint, '--map', source, '--split', 'val',
        '--num', '8', '--thr', '0.3', '--out', str(out)])
    assert set(metrics) == KEYS
    assert json.loads(out.read_text()) == pytest.approx(metrics)
