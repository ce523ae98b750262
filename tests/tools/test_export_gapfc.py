"""tools/export_gapfc.py: a trained saol_demo model's GAP-FC branch becomes a
stock mmpretrain model that a Python without mmsaol loads, tests (with
mmpretrain's own tools/test.py) and scores exactly like the SAOL model's
GAP-FC output."""
import os.path as osp
import re
import runpy
import subprocess
import sys
import textwrap

import mmengine
import mmpretrain
import pytest
import torch
from mmengine.config import Config

from mmsaol.apis.export_gapfc import export_gapfc, mmsaol_type_names
from mmsaol.apis.test import main as cli_test
from mmsaol.apis.train import main as cli_train

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STOCK_TEST_TOOL = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                           'test.py')
# Two training iterations of 16 images; 24 test images.
SMALL = [
    'train_dataloader.dataset.copies=1', 'train_dataloader.dataset.indices=32',
    'train_dataloader.batch_size=16', 'train_cfg.max_epochs=1',
    'val_dataloader.dataset.indices=24', 'test_dataloader.dataset.indices=24',
]


def export_tool(*args):
    """Run tools/export_gapfc.py as a script, in this process."""
    saved = sys.argv
    sys.argv = [osp.join(REPO, 'tools', 'export_gapfc.py'), *args]
    try:
        runpy.run_path(sys.argv[0], run_name='__main__')
    finally:
        sys.argv = saved


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """saol_demo trained by tools/train.py's entry for two iterations;
    returns the config the run dumped to its work_dir and the checkpoint."""
    work_dir = str(tmp_path_factory.mktemp('saol'))
    cli_train([osp.join(REPO, 'configs', 'saol_demo.py'), '--work-dir',
               work_dir, '--cfg-options', *SMALL])
    return osp.join(work_dir, 'saol_demo.py'), osp.join(work_dir,
                                                        'epoch_1.pth')


@pytest.fixture(scope='module')
def exported(trained, tmp_path_factory):
    """The export of the repository's config (with its ``_base_`` files),
    given the training's overrides; other tests export the work_dir copy."""
    out_dir = str(tmp_path_factory.mktemp('export'))
    export_tool(osp.join(REPO, 'configs', 'saol_demo.py'), trained[1],
                out_dir, '--cfg-options', *SMALL)
    return (osp.join(out_dir, 'saol_demo_gapfc.py'),
            osp.join(out_dir, 'saol_demo_gapfc.pth'))


def test_exported_config_is_stock_mmpretrain(exported):
    config, _ = exported
    cfg = Config.fromfile(config)
    data_root = cfg.test_dataloader.dataset.data_root
    with open(config) as f:
        text = f.read().replace(data_root, 'DATA_ROOT')  # a tmp path
    assert 'mmsaol' not in text and '_base_' not in text
    assert 'custom_imports' not in cfg
    model = cfg.model
    assert model.type == 'ImageClassifier'
    assert model.backbone.type == 'ResNet_CIFAR'
    assert tuple(model.backbone.out_indices) == (3, )
    assert model.neck == dict(type='GlobalAveragePooling')
    assert model.head.type == 'LinearClsHead'
    assert (model.head.in_channels, model.head.num_classes) == (128, 10)
    assert model.head.loss.use_soft
    assert model.train_cfg.augments == [dict(type='CutMix', alpha=1.0)]
    assert model.train_cfg.probs == [0.5]
    assert cfg.default_hooks.checkpoint.type == 'CheckpointHook'
    assert cfg.custom_hooks == []  # mmsaol's NaN and checkpoint-fit hooks
    names = mmsaol_type_names()
    assert 'DigitsCanvas' in names and 'SAOLDataPreprocessor' in names
    for key in ('train', 'val', 'test'):
        dataset = cfg[f'{key}_dataloader'].dataset
        assert dataset.type == 'CustomDataset'
        # The config's own pipeline, reading the files exactly once.
        assert dataset.pipeline[0] == dict(type='LoadImageFromFile')
        assert [t.type for t in dataset.pipeline].count(
            'LoadImageFromFile') == 1
        assert dataset.pipeline[-1].type == 'PackInputs'
        with open(osp.join(dataset.data_root, dataset.ann_file)) as f:
            assert len(f.readlines()) == (32 if key == 'train' else 24)
    # Unchanged: evaluators, schedule, runtime.
    assert cfg.test_evaluator == dict(type='Accuracy', topk=(1, ))
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.default_scope == 'mmpretrain'
    assert 'load_from' not in cfg and 'work_dir' not in cfg


def test_exported_checkpoint_holds_only_plain_weights(trained, exported):
    # Stock torch.load: weights_only=True and no allow-list at all.
    ckpt = torch.load(exported[1], map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    source = torch.load(trained[1], map_location='cpu',
                        weights_only=False)['state_dict']
    backbone = {k for k in source if k.startswith('backbone.')}
    state = ckpt['state_dict']
    assert set(state) == backbone | {'head.fc.weight', 'head.fc.bias'}
    for key in backbone:
        assert torch.equal(state[key], source[key]), key
    assert torch.equal(state['head.fc.weight'], source['head.gapfc.weight'])
    assert torch.equal(state['head.fc.bias'], source['head.gapfc.bias'])
    assert ckpt['meta']['dataset_meta'] == dict(
        classes=[str(i) for i in range(10)])
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 2


# Runs in a Python that never imports mmsaol: mmpretrain's init_model on the
# exported files, then mmpretrain's own tools/test.py, unchanged.
STOCK_CHECK = textwrap.dedent('''
    import runpy, sys
    import torch
    from mmengine.runner import Runner
    from mmpretrain.apis import init_model
    from mmpretrain.utils import register_all_modules

    config, checkpoint, test_tool, work_dir = sys.argv[1:5]
    register_all_modules()
    model = init_model(config, checkpoint, device='cpu')
    assert model._dataset_meta['classes'][9] == '9'
    loader = Runner.build_dataloader(model._config.test_dataloader)
    scores = []
    with torch.no_grad():
        for data in loader:
            scores += [s.pred_score for s in model.test_step(data)]
    torch.save(torch.stack(scores), work_dir + '/init_model_scores.pt')

    sys.argv = [test_tool, config, checkpoint, '--work-dir', work_dir,
                '--out', work_dir + '/stock.pkl']
    runpy.run_path(test_tool, run_name='__main__')
    assert 'mmsaol' not in sys.modules, 'mmsaol was imported'
    print('STOCK_OK')
''')


def test_stock_mmpretrain_reproduces_gapfc_branch(trained, exported,
                                                  tmp_path):
    # The SAOL model's GAP-FC output on the demo test split (mmsaol).
    saol_out = str(tmp_path / 'saol.pkl')
    saol_metrics = cli_test([*trained, '--head', 'gapfc', '--out', saol_out,
                             '--work-dir', str(tmp_path / 'saol')])
    saol = sorted(mmengine.load(saol_out), key=lambda p: p['sample_idx'])
    expected = torch.stack([p['pred_score'] for p in saol])
    assert expected.shape == (24, 10)

    # The exported model in a Python without mmsaol.
    work_dir = tmp_path / 'stock'
    work_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, '-c', STOCK_CHECK, *exported, STOCK_TEST_TOOL,
         str(work_dir)], cwd=str(tmp_path), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0 and 'STOCK_OK' in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]

    scores = torch.load(work_dir / 'init_model_scores.pt', weights_only=True)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)
    stock = sorted(mmengine.load(str(work_dir / 'stock.pkl')),
                   key=lambda p: p['sample_idx'])
    torch.testing.assert_close(torch.stack([p['pred_score'] for p in stock]),
                               expected, rtol=0, atol=1e-5)
    # Same images in the same order: the labels of the image folder match.
    assert [int(p['gt_label']) for p in stock] == \
        [int(p['gt_label']) for p in saol]
    # Same predicted labels wherever the top-2 gap exceeds the rounding
    # tolerance of the scores (a near tie may flip between the two
    # graphs); the stock tool's accuracy counts its own predictions.
    top2 = expected.topk(2, dim=1).values
    clear = ((top2[:, 0] - top2[:, 1]) > 2e-5).tolist()
    for s, p, c in zip(saol, stock, clear):
        assert not c or int(s['pred_label']) == int(p['pred_label'])
    stock_top1 = 100 * sum(int(p['pred_label']) == int(p['gt_label'])
                           for p in stock) / len(stock)
    saol_top1 = 100 * sum(int(p['pred_label']) == int(p['gt_label'])
                          for p in saol) / len(saol)
    assert saol_top1 == pytest.approx(saol_metrics['accuracy/top1'],
                                      abs=1e-4)
    assert abs(stock_top1 - saol_top1) <= 100 * (len(clear) - sum(clear)) \
        / len(clear) + 1e-4
    assert 'accuracy/top1' in proc.stdout + proc.stderr


def test_refuses_checkpoint_without_gapfc_branch(trained, tmp_path,
                                                 capsys):
    config, checkpoint = trained
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = {k: v for k, v in ckpt['state_dict'].items()
             if not k.startswith('head.gapfc.')}
    plain = str(tmp_path / 'no_branch.pth')
    torch.save(dict(state_dict=state, meta=dict()), plain)
    out_dir = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        export_tool(config, plain, str(out_dir))
    assert exit_info.value.code == 2
    assert re.search(r'^export_gapfc\.py: error \(ValueError\): .*no trained '
                     r'GAP-FC branch .*model\.head\.distillation',
                     capsys.readouterr().err)
    assert not out_dir.exists()


def test_refuses_config_without_distillation(trained, tmp_path):
    with pytest.raises(ValueError, match=r'model\.head\.distillation is '
                       'None'):
        export_gapfc(*trained, str(tmp_path / 'out'),
                     cfg_options={'model.head.distillation': None})
    assert not (tmp_path / 'out').exists()


def test_refuses_checkpoint_of_another_config(trained, tmp_path):
    with pytest.raises(ValueError, match='does not fit the config'):
        export_gapfc(*trained, str(tmp_path / 'out'),
                     cfg_options={'model.backbone.base_channels': 8})


def test_other_mmsaol_fields_become_stock(trained, tmp_path):
    """CPU --amp's optimizer wrapper and per-image CutMix boxes map to
    their stock forms; other custom imports stay."""
    options = {
        'optim_wrapper.type': 'CPUAmpOptimWrapper',
        'optim_wrapper.dtype': 'bfloat16',
        'model.train_cfg.augments': [dict(type='GeometryCutMix', alpha=0.5,
                                          per_sample_box=True)],
        'custom_imports.imports': ['mmsaol', 'mmpretrain.models'],
    }
    result = export_gapfc(*trained, str(tmp_path / 'out'),
                          cfg_options=options)
    cfg = Config.fromfile(result.config)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'dtype' not in cfg.optim_wrapper
    assert cfg.model.train_cfg.augments == [dict(type='CutMix', alpha=0.5)]
    assert cfg.custom_imports.imports == ['mmpretrain.models']
    assert result.dropped == ['custom_hooks: NonFiniteLossHook',
                              'custom_hooks: CheckpointMatchHook']


def test_tool_reports_progress_and_why_entries_are_left_out(trained,
                                                            tmp_path,
                                                            capsys):
    from mmsaol.apis.export_gapfc import main
    main([*trained, str(tmp_path / 'out'), '--cfg-options', *SMALL])
    lines = capsys.readouterr().out.splitlines()
    data = tmp_path / 'out' / 'data'
    for split, total in (('train', 32), ('val', 24)):
        counts = [line.rsplit(' ', 1)[-1] for line in lines
                  if line.startswith(f'images written to {data / split}:')]
        # every tenth of the folder, then its end
        assert counts[-1] == f'{total}/{total}' and len(counts) >= 10
    for hook in ('NonFiniteLossHook', 'CheckpointMatchHook'):
        assert ('left out (an mmsaol hook: the exported config must not '
                f'need mmsaol): custom_hooks: {hook}') in lines


def test_refuses_mmsaol_type_without_stock_counterpart(trained, tmp_path):
    options = {'model.head.distillation.gt_loss': dict(
        type='SpatialLogitsLoss')}
    with pytest.raises(ValueError, match=r"model\.head\.loss\.type is "
                       "'SpatialLogitsLoss', which needs mmsaol"):
        export_gapfc(*trained, str(tmp_path / 'out'), cfg_options=options)
    assert not (tmp_path / 'out' / 'saol_demo_gapfc.py').exists()


def test_map_metrics_and_hooks_are_left_out(trained, tmp_path):
    pytest.importorskip('mmsaol.evaluation')
    pytest.importorskip('mmsaol.visualization')
    names = mmsaol_type_names()
    metric, hook = 'WSOLMetric', 'SAOLMapsHook'
    assert names[metric] == 'metric' and names[hook] == 'hook'
    options = {
        'test_evaluator': [dict(type='Accuracy', topk=(1, )),
                           dict(type=metric)],
        'custom_hooks': [dict(type=hook)],
    }
    result = export_gapfc(*trained, str(tmp_path / 'out'),
                          cfg_options=options)
    cfg = Config.fromfile(result.config)
    assert cfg.test_evaluator == [dict(type='Accuracy', topk=(1, ))]
    assert cfg.custom_hooks == []
    assert result.dropped == [f'test_evaluator: {metric}',
                              f'custom_hooks: {hook}']
    with pytest.raises(ValueError, match='only metrics of SAOL maps'):
        export_gapfc(*trained, str(tmp_path / 'out2'),
                     cfg_options={'test_evaluator': dict(type=metric)})
