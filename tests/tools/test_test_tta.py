"""tools/test.py --tta with --head: the output choice reaches the classifier
inside mmpretrain's test-time-augmentation wrapper."""
import copy
import os.path as osp

import mmengine
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmpretrain.apis import get_model
from mmpretrain.registry import DATASETS

from mmsaol.apis.test import main as cli_test

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'saol_demo.py')
NUM = 8


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A randomly initialised demo SAOL model (with its GAP-FC branch)."""
    model = get_model(CONFIG)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
    path = str(tmp_path_factory.mktemp('ckpt') / 'saol.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def expected_flip_average(checkpoint, head):
    """Scores of ``head`` averaged over each image and its mirror image,
    computed directly from the model and the test data set."""
    cfg = Config.fromfile(CONFIG)
    cfg.model.head.test_output = head
    model = get_model(cfg, checkpoint)
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.indices = NUM
    batch = pseudo_collate(list(DATASETS.build(dataset_cfg)))
    flipped = dict(batch, inputs=[image.flip(-1) for image in
                                  batch['inputs']])
    with torch.no_grad():
        scores = [torch.stack([s.pred_score for s in model.test_step(b)])
                  for b in (batch, flipped)]
    return (scores[0] + scores[1]) / 2


@pytest.mark.parametrize('head', ['gapfc', 'saol'])
def test_tta_evaluates_the_chosen_head(tmp_path, checkpoint, head):
    out = str(tmp_path / 'preds.pkl')
    metrics = cli_test([
        CONFIG, checkpoint, '--tta', '--head', head, '--out', out,
        '--work-dir', str(tmp_path), '--cfg-options',
        f'test_dataloader.dataset.indices={NUM}'])
    assert 0 <= metrics['accuracy/top1'] <= 100
    preds = sorted(mmengine.load(out), key=lambda p: p['sample_idx'])
    scores = torch.stack([p['pred_score'] for p in preds])
    torch.testing.assert_close(scores,
                               expected_flip_average(checkpoint, head),
                               rtol=0, atol=1e-6)


def test_head_flag_needs_a_saol_head(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_test([osp.join(REPO, 'configs', 'gapfc_demo.py'), checkpoint,
                  '--tta', '--head', 'gapfc', '--work-dir', str(tmp_path)])
    assert exit_info.value.code == 2
    assert "model.module.head.type is 'LinearClsHead'" in \
        capsys.readouterr().err


def test_tta_with_the_demo_hooks(tmp_path, checkpoint):
    """CheckpointMatchHook (on in the demo config) compares the checkpoint
    with the classifier inside the TTA wrapper."""
    metrics = cli_test([
        CONFIG, checkpoint, '--tta', '--head', 'gapfc', '--work-dir',
        str(tmp_path), '--cfg-options',
        f'test_dataloader.dataset.indices={NUM}'])
    assert 0 <= metrics['accuracy/top1'] <= 100
