"""tools/benchmark.py (mmsaol.apis.benchmark): SAOL's cost against GAP-FC."""
from __future__ import annotations

import json
import os.path as osp
import statistics

import pytest
import torch
from torch.utils.benchmark import Measurement

from mmsaol.apis.benchmark import (
    VARIANTS,
    build_bench,
    main,
    parse_args,
    setup_from_args,
)
from mmsaol.apis.benchmark import variant_model_config as model_config
from mmsaol.apis.benchmark_measure import (
    PROFILER_NOISE,
    STEP_PARTS,
    measure,
    native_output_filtered,
    throughput,
)

DEMO = 'configs/saol_demo.py'


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_model_end_to_end(tmp_path, capfd, one_thread):
    """Table on stdout, progress on stderr, and none of the profiler's own
    lines (``capfd`` also sees what C++ code writes to the descriptors)."""
    out = tmp_path / 'cost.json'
    report = main(['--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '4', '--iters', '2', '--warmup', '0',
                   '--repeats', '1', '--num-classes', '10',
                   '--threads', '1', '--clock', 'process',
                   '--out', str(out)])
    captured = capfd.readouterr()
    table = captured.out.strip().splitlines()
    assert table[0].startswith('| variant | params (M) | MACs (G)')
    for noise in ('USDT', 'gpuGetDeviceCount', 'Memory block of unknown'):
        assert noise not in captured.out + captured.err
    assert [row.split('|')[1].strip() for row in table[2:]] == \
        [label for label, _ in VARIANTS.values()]
    assert '[benchmark] train repeat 1/1' in captured.err  # progress
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))

    rows = {v['name']: v for v in report['variants']}
    assert list(rows) == list(VARIANTS)
    assert rows['gapfc']['ratio_to_gapfc'] == pytest.approx(
        dict.fromkeys(rows['gapfc']['ratio_to_gapfc'], 1.0))
    for row in rows.values():
        assert row['train_images_per_s'] > 0 < row['infer_images_per_s']
        # one repeat: no spread
        assert row['train_relative_iqr'] == 0 == row['infer_relative_iqr']
        assert row['step_peak_bytes'] > 0 and row['macs'] > 0
        # parameters, gradients... at least parameters and SGD momentum
        assert row['state_bytes'] >= 2 * 4 * row['params']
    # Self-supervision only adds training work; distillation adds the
    # GAP-FC branch's parameters, not inference MACs (forward is SAOL's).
    saol = rows['saol']
    assert saol['params'] > rows['gapfc']['params']
    assert saol['macs'] > rows['gapfc']['macs']
    for name in ('saol_label', 'saol_self'):
        assert (rows[name]['params'], rows[name]['macs']) == \
            (saol['params'], saol['macs'])
    gapfc_branch = 512 * 10 + 10
    assert rows['saol_distill']['params'] == saol['params'] + gapfc_branch
    assert rows['saol_all']['macs'] == saol['macs']
    # What is measured is written down.
    assert 'torch.profiler' in report['setup']['memory_metric']
    # The memory events of the profiler add up to what torch allocated:
    # at least one batch of float32 inputs was allocated in the step.
    assert all(row['step_peak_bytes'] >= 4 * 3 * 32 * 32 * 4
               for row in rows.values())
    assert report['setup']['clock'] == 'process'
    assert report['setup']['threads'] == 1


def test_split_inference_column(capsys, one_thread):
    """--split times backbone and head apart: one backbone time for all
    variants (they share it), a head time per variant, and a column whose
    GAP-FC/SAOL ratio follows from them."""
    report = main(['--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '4', '--iters', '2', '--warmup', '0',
                   '--repeats', '2', '--num-classes', '10',
                   '--threads', '1', '--variants', 'gapfc', 'saol',
                   '--split'])
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0]
    assert '| inference images/s | inference images/s (split) |' in header
    assert '[benchmark] split repeat 2/2' in captured.err
    rows = {v['name']: v for v in report['variants']}
    backbone = statistics.median(
        t for row in rows.values() for t in row['backbone_s_runs'])
    for row in rows.values():
        assert len(row['head_s_runs']) == 2
        assert row['split_infer_images_per_s'] == pytest.approx(
            4 / (backbone + statistics.median(row['head_s_runs'])))
    # The SAOL head does more work than GAP + FC.
    assert statistics.median(rows['saol']['head_s_runs']) > \
        statistics.median(rows['gapfc']['head_s_runs'])
    assert rows['saol']['ratio_to_gapfc']['split_infer_images_per_s'] < 1


def test_step_breakdown(capsys, one_thread):
    """--breakdown times the parts of a training step; only mode 'self'
    has an un-mixed forward, and the timed method is the model's own again
    afterwards."""
    report = main(['--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '4', '--iters', '1', '--warmup', '0',
                   '--repeats', '1', '--num-classes', '10',
                   '--threads', '1', '--variants', 'gapfc', 'saol',
                   'saol_self', '--breakdown'])
    out = capsys.readouterr().out
    assert '| preprocess (ms) | unmixed (ms) | forward (ms) |' in out
    rows = {v['name']: v for v in report['variants']}
    for name, row in rows.items():
        parts = row['step_parts_s']
        assert set(parts) == set(STEP_PARTS)
        assert parts['forward'] > 0 < parts['backward']
        assert (parts['unmixed'] > 0) == (name == 'saol_self')
    setup = _setup('--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '2', '--num-classes', '10')
    bench = build_bench(setup, 'saol_self', (128, 256, 512))
    bench.train_parts(1)
    assert 'unmixed_outputs' not in vars(bench.model)
    for other in ('--no-train', '--onnx'):
        with pytest.raises(SystemExit):
            parse_args(['--backbone', 'resnet18_cifar', '--breakdown', other])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_tiny_model_on_cuda_with_amp(capsys):
    report = main(['--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '4', '--iters', '2', '--warmup', '1',
                   '--repeats', '1', '--num-classes', '10', '--device',
                   'cuda', '--amp', '--variants', 'gapfc', 'saol_all'])
    assert report['setup']['amp_dtype'] == 'float16'
    assert 'max_memory_allocated' in report['setup']['memory_metric']
    for row in report['variants']:
        assert row['train_images_per_s'] > 0 < row['step_peak_bytes']


def _setup(*argv):
    return setup_from_args(parse_args(list(argv)))


def test_variants_share_the_backbone_of_a_config(tmp_path):
    config = tmp_path / 'saol.py'
    config.write_text(
        f"_base_ = [{osp.abspath(DEMO)!r}]\n"
        "model = dict(train_cfg=dict(_delete_=True, augments=[dict("
        "type='GeometryCutMix', alpha=1.0)], probs=[0.5]))\n")
    setup = _setup(str(config), '--input-size', '40')
    channels = (32, 64, 128)
    gapfc = model_config(setup, 'gapfc', channels)
    assert gapfc['type'] == 'ImageClassifier'
    assert gapfc['head']['type'] == 'LinearClsHead'
    assert gapfc['head']['in_channels'] == 128
    assert gapfc['head']['loss'] == setup.saol_head['loss']
    assert gapfc['train_cfg'] == dict(augments=[dict(type='CutMix',
                                                    alpha=1.0)],
                                      probs=[0.5])
    assert gapfc['data_preprocessor']['type'] == 'ClsDataPreprocessor'
    for name, (_, overrides) in VARIANTS.items():
        cfg = model_config(setup, name, channels)
        expected = dict(setup.backbone)
        if name == 'gapfc':
            expected['out_indices'] = (3, )
        assert cfg['backbone'] == expected
        if overrides is None:
            continue
        head = cfg['head']
        assert cfg['type'] == 'SAOLClassifier'
        assert cfg['train_cfg']['augments'][0]['type'] == 'GeometryCutMix'
        assert cfg['train_cfg']['probs'] == [0.5]
        # the config's SAOL options, with the variant's parts
        assert head['channels'] == 64 and head['in_channels'] == channels
        assert head.get('self_supervision') == \
            overrides.get('self_supervision')
        assert head.get('distillation') == overrides.get('distillation')
    assert setup.num_classes == 10 and setup.input_size == (40, 40)


def test_random_batch_augment_is_mapped_per_variant():
    setup = _setup('--backbone', 'resnet18_cifar', '--input-size', '32')
    setup.train_cfg = dict(augments=[
        dict(type='GeometryCutMix', alpha=1.0, per_sample_box=True),
        dict(type='Mixup', alpha=0.8)], probs=[0.6, 0.2])
    gapfc = model_config(setup, 'gapfc', (128, 256, 512))
    saol = model_config(setup, 'saol_self', (128, 256, 512))
    assert gapfc['train_cfg'] == dict(augments=[
        dict(type='CutMix', alpha=1.0), dict(type='Mixup', alpha=0.8)],
        probs=[0.6, 0.2])
    assert saol['train_cfg'] == setup.train_cfg


@pytest.mark.parametrize('argv,message', [
    (['--backbone', 'vgg16'], 'not a preset'),
    (['--backbone', 'resnet50', '--variants', 'saol'], 'include gapfc'),
    (['--backbone', 'resnet50', '--variants', 'gapfc', 'saol_x'],
     'unknown'),
    (['--backbone', 'resnet50', '--iters', '0'], '--iters'),
])
def test_bad_arguments_are_explained(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_inference_only_run(capsys, one_thread):
    report = main(['--backbone', 'resnet18_cifar', '--input-size', '32',
                   '--batch-size', '2', '--iters', '1', '--warmup', '0',
                   '--repeats', '1', '--num-classes', '10', '--threads', '1',
                   '--variants', 'gapfc', 'saol', '--no-train'])
    header = capsys.readouterr().out.splitlines()[0]
    assert 'inference images/s' in header
    assert 'train' not in header
    for row in report['variants']:
        assert row['train_runs'] == [] and row['infer_images_per_s'] > 0
        assert 'train_images_per_s' not in row['ratio_to_gapfc']


def test_native_output_filter_keeps_other_lines(capfd):
    """Lines written to the file descriptors (as C++ code does) pass the
    filter unless they are the profiler's noise, each to its own stream."""
    import os
    with native_output_filtered(PROFILER_NOISE):
        os.write(1, b'kept on stdout\n')
        os.write(2, b'USDT:2026 SyncActivityProfilerHandler.cpp] start\n'
                    b'ERROR:2026 DeviceProperties.cpp:56] gpuGetDeviceCount '
                    b'failed with code 35\nkept on stderr\n')
        print('python line', flush=True)
    captured = capfd.readouterr()
    # (pytest's own sys.stdout may put the Python line first)
    assert sorted(captured.out.splitlines()) == ['kept on stdout',
                                                 'python line']
    assert captured.err == 'kept on stderr\n'


def test_one_timing_loop_counts_its_calls():
    """A step that changes state is called exactly ``number`` times (no
    untimed extra optimizer steps); a stateless one goes through
    ``torch.utils.benchmark.Timer``, which adds its untimed warm-up."""
    calls = []
    run = measure(lambda: calls.append(1), 5, clock='process',
                  changes_state=True)
    assert len(calls) == 5 and run.number_per_run == 5
    calls.clear()
    run = measure(lambda: calls.append(1), 5, clock='wall')
    assert len(calls) == 5 + 2 and run.number_per_run == 5


def test_median_and_iqr_of_runs():
    """Images/s of each run, and from the seconds per batch of the runs
    their median and IQR (linear interpolation between order
    statistics)."""
    runs = [measure(lambda: None, 1, changes_state=True) for _ in range(4)]
    for run, seconds in zip(runs, (4.0, 1.0, 3.0, 2.0)):
        run.raw_times[:] = [seconds * 2]
        run.number_per_run = 2
    per_run, images_per_s, relative_iqr = throughput(runs, 10)
    assert per_run == [2.5, 10.0, 10 / 3, 5.0]
    assert images_per_s == pytest.approx(10 / 2.5)
    assert relative_iqr == pytest.approx(1.5 / 2.5)
    assert isinstance(runs[0], Measurement)
