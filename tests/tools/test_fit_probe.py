"""tools/fit_probe.py on an untrained demo model: fit on both splits and
one gradient row per loss term."""
import os.path as osp

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmsaol  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool():
    from mmsaol.apis import fit_probe
    return fit_probe


def test_fit_probe_reports_fit_and_gradients(tmp_path, capsys):
    config = osp.join(REPO, 'configs', 'saol_demo.py')
    cfg = Config.fromfile(config)
    model_cfg = dict(cfg.model, data_preprocessor=cfg.data_preprocessor)
    torch.manual_seed(0)
    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict=MODELS.build(model_cfg).state_dict()),
               checkpoint)
    load_tool().main([config, str(checkpoint), '--num', '16',
                      '--grad-batches', '1', '--cfg-options',
                      'train_dataloader.batch_size=8'])
    out = capsys.readouterr().out
    assert 'train: top-1' in out and 'test: top-1' in out
    for name in ('loss_cls', 'loss_gapfc', 'loss_distill'):
        assert f'{name}: |grad| last-stage output' in out
    # The GAP-FC branch's gradient reaches every location of the 5x5 map
    # equally (global average pooling), by construction.
    assert 'loss_gapfc' in out and \
        out.split('loss_gapfc')[1].splitlines()[0].endswith(
            'spread over 25.0 locations')
