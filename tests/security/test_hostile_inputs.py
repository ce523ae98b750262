"""Each hole of the third security round, reproduced with a crafted file
built here: code execution in ``fit-probe`` and ``infer-onnx``, a crash on
``--resume`` from a forged random state, a study writing outside its
folders, a zip bomb stalling automatic ``--resume``, weight values checked
only in the runner, a non-atomic ``export-onnx``; and the tracebacks where
one sentence is promised."""
from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_files import (
    GAPFC_MODEL,
    SAOL_MODEL,
    empty_image,
    huge_header_png,
    nan_weights,
    onnx_model,
    payload_checkpoint,
    weights,
    write_config,
    write_images,
    zip_bomb,
)
from mmengine.runner import Runner

from mmsaol.apis import entry
from mmsaol.compat.checkpoint import UnsafeCheckpointError
from mmsaol.engine import CheckpointMatchHook, CheckpointMismatchError
from mmsaol.engine.hooks.atomic_checkpoint_hook import checkpoint_problem
from mmsaol.engine.hooks.safe_resume_hook import sanitize_checkpoint
from mmsaol.engine.rng_state import capture_rng_state, restore_rng_state
from mmsaol.engine.work_dir import WorkDirError, work_dir_error


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny GAP-FC config, its images and a usable checkpoint."""
    root = tmp_path_factory.mktemp('hostile')
    data = write_images(root / 'data', count=1)
    config = write_config(root / 'gapfc.py', data, root / 'work',
                          GAPFC_MODEL)
    state = weights(GAPFC_MODEL)
    good = root / 'good.pth'
    torch.save({'state_dict': state}, good)
    return dict(root=root, config=str(config), state=state, good=str(good),
                image=str(data / 'a' / '0.png'))


def run(argv, capsys):
    """``mmsaol ARGV`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        entry.main([str(a) for a in argv])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def one_error_line(err: str, tool: str) -> str:
    lines = [line for line in err.splitlines() if ': error' in line]
    assert len(lines) == 1 and lines[0].startswith(f'mmsaol {tool}: error'),\
        err
    assert 'Traceback' not in err
    return lines[0]


# 1. fit-probe read checkpoints with weights_only=False -------------------
def test_fit_probe_does_not_run_a_pickled_payload(setup, tmp_path, capsys):
    marker = tmp_path / 'MARKER'
    payload = payload_checkpoint(tmp_path / 'payload.pth', marker)
    status, err = run(['fit-probe', setup['config'], payload, '--num', 2,
                       '--grad-batches', 1], capsys)
    assert not marker.exists()
    assert status == 2
    assert 'UnsafeCheckpointError' in one_error_line(err, 'fit-probe')


# 2. infer-onnx built its metadata pipeline through the registry ---------
def onnx_file(path: Path, **metadata) -> str:
    path.write_bytes(onnx_model({k: v if isinstance(v, str) else
                                 json.dumps(v) for k, v in metadata.items()}))
    return str(path)


def test_infer_onnx_never_imports_a_dotted_pipeline_name(setup, tmp_path,
                                                         capsys):
    pytest.importorskip('onnxruntime')
    marker = tmp_path / 'MARKER'
    model = onnx_file(tmp_path / 'evil.onnx', test_pipeline=[dict(
        type='os.system', command=f'touch {marker}')])
    status, err = run(['infer-onnx', model, setup['image']], capsys)
    assert not marker.exists() and status == 2
    line = one_error_line(err, 'infer-onnx')
    assert 'evil.onnx' in line and 'test_pipeline' in line
    assert "'os.system'" in line


def test_infer_onnx_builds_an_allowed_pipeline(setup, tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    model = onnx_file(tmp_path / 'ok.onnx', test_pipeline=[
        dict(type='ResizeEdge', scale=20),
        dict(type='CenterCrop', crop_size=16), dict(type='PackInputs')])
    status, err = run(['infer-onnx', model, setup['image']], capsys)
    assert status == 0, err


@pytest.mark.parametrize('field, value', [
    ('input_size', [0, 0]),
    ('classes', 'abc'),
    ('test_pipeline', dict(type='PackInputs')),
    ('classes', '[a, b'),  # not JSON
    ('topk', True),
    ('std', [0, 1, 1]),
])
def test_infer_onnx_metadata_oddities_are_one_sentence(setup, tmp_path,
                                                       capsys, field, value):
    pytest.importorskip('onnxruntime')
    raw = value if field == 'classes' and value.startswith('[') else \
        json.dumps(value)
    model = onnx_file(tmp_path / 'odd.onnx', **{field: raw})
    status, err = run(['infer-onnx', model, setup['image']], capsys)
    assert status == 2
    line = one_error_line(err, 'infer-onnx')
    assert 'odd.onnx' in line and f'metadata field {field}' in line


# 3. --resume handed a forged random state to numpy and Python -----------
def forged(change) -> dict:
    state = copy.deepcopy(capture_rng_state())
    change(state)
    return state


@pytest.mark.parametrize('name, change', [
    ('numpy pos 10**9', lambda s: s['numpy'].update(pos=10**9)),
    ('numpy pos -1', lambda s: s['numpy'].update(pos=-1)),
    ('numpy has_gauss huge', lambda s: s['numpy'].update(has_gauss=10**30)),
    ('numpy key 2**32', lambda s: s['numpy']['keys'].__setitem__(0, 2**32)),
    ('python word -1', lambda s: s['python'][1].__setitem__(0, -1)),
    ('python pos 10**6', lambda s: s['python'][1].__setitem__(624, 10**6)),
    ('python version', lambda s: s['python'].__setitem__(0, 2**70)),
    ('torch short', lambda s: s.update(torch=s['torch'][:8])),
    ('torch float', lambda s: s.update(torch=s['torch'].float())),
    ('sampler seed', lambda s: s.update(sampler_seed=-5)),
])
def test_forged_rng_state_changes_nothing(name, change):
    """Refused before any generator changes (all or nothing); numpy is
    never handed an out-of-range position (it crashed the process)."""
    state = forged(change)
    before = (capture_rng_state(), np.random.get_state()[2])
    problem = restore_rng_state(state)
    assert problem is not None and "meta['rng_state']" in problem
    after = capture_rng_state()
    assert after['python'] == before[0]['python']
    assert after['numpy'] == before[0]['numpy']
    assert torch.equal(after['torch'], before[0]['torch'])


def test_forged_numpy_position_does_not_crash_the_process(tmp_path):
    """numpy 2 reads past its key array for pos=10**9 (SIGSEGV): run in a
    subprocess so that a crash is seen as one."""
    import mmsaol.engine.rng_state as module
    code = (
        'import importlib.util, sys\n'
        'import numpy as np\n'
        'spec = importlib.util.spec_from_file_location("rng", sys.argv[1])\n'
        'rng = importlib.util.module_from_spec(spec)\n'
        'spec.loader.exec_module(rng)\n'
        'capture_rng_state = rng.capture_rng_state\n'
        'restore_rng_state = rng.restore_rng_state\n'
        'for pos in (10**9, -10**9):\n'
        '    s = capture_rng_state(); s["numpy"]["pos"] = pos\n'
        '    print(restore_rng_state(s))\n'
        '    np.random.random(10)\n')
    done = subprocess.run([sys.executable, '-c', code, module.__file__],
                          capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('malformed') == 2


# 4. study names and options left the study's folders --------------------
def study_file(path: Path, config: str, **fields) -> str:
    variant = dict(name='v', config=config,
                   options=fields.pop('options', []))
    path.write_text(json.dumps(dict(name=fields.pop('name', 's'),
                                    variants=[variant], seeds=[0])))
    return str(path)


@pytest.mark.parametrize('fields, said', [
    (dict(name='../../escaped'), '"name"'),
    (dict(name='/abs'), '"name"'),
    (dict(options=['--work-dir=/tmp/elsewhere']), '--work-dir'),
    (dict(options=['work_dir=/tmp/elsewhere']), 'work_dir'),
    (dict(options=[3]), 'option 3'),
])
def test_study_refuses_names_and_options_leaving_its_folders(
        setup, tmp_path, capsys, fields, said, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = study_file(tmp_path / 'study.json', setup['config'], **fields)
    status, err = run(['study', spec, '--work-dir', tmp_path / 'runs',
                       '--results-dir', tmp_path / 'results'], capsys)
    assert status == 2
    line = one_error_line(err, 'study')
    assert said in line and 'study.json' in line
    assert sorted(os.listdir(tmp_path)) == ['study.json']
    assert not (tmp_path.parent / 'escaped').exists()


def test_study_with_a_failed_run_exits_non_zero(tmp_path, capsys,
                                                monkeypatch):
    """Every run failed (the training process exits with status 1):
    the study exits with status 1, not 0."""
    from mmsaol.apis import study
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(study.sys, 'executable', '/bin/false')
    spec = study_file(tmp_path / 'study.json', str(tmp_path / 'none.py'))
    status, _ = run(['study', spec, '--work-dir', tmp_path / 'runs',
                     '--results-dir', tmp_path / 'results'], capsys)
    assert status == 1


# 5. a zip bomb stalled automatic --resume --------------------------------
def test_resume_check_refuses_a_zip_bomb_without_inflating(tmp_path,
                                                           monkeypatch):
    """checkpoint_problem (the auto-resume check) reads only the central
    directory of a bomb: ZipFile.read/testzip are never reached."""
    from mmsaol.compat.checkpoint import check_container
    bomb = zip_bomb(tmp_path / 'epoch_1.pth', records=64, size=2**20)

    def inflating(*args, **kwargs):
        raise AssertionError('the bomb was inflated')

    monkeypatch.setattr(zipfile.ZipFile, 'testzip', inflating)
    monkeypatch.setattr(zipfile.ZipFile, 'read', inflating)
    assert checkpoint_problem(str(bomb)) is None  # loading refuses it
    with pytest.raises(UnsafeCheckpointError, match='declare 64.0 MiB'):
        check_container(str(bomb))


# 6. weight values were checked only inside the runner -------------------
def test_get_model_and_the_inferencer_refuse_nan_weights(setup, tmp_path):
    from mmengine.config import Config
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    from mmsaol.compat.checkpoint import UnusableWeightsError
    bad = str(nan_weights(tmp_path / 'nan.pth', setup['state']))
    cfg = Config.fromfile(setup['config'])
    for call in (lambda: get_model(cfg, pretrained=bad),
                 lambda: ImageClassificationInferencer(
                     cfg, pretrained=bad)(setup['image'])):
        with pytest.raises(UnusableWeightsError,
                           match=r"nan\.pth.*backbone\.conv1\.weight "
                           r'holds \d+ of \d+ values that are NaN'):
            call()


@pytest.mark.parametrize('tool', ['maps', 'export-onnx', 'fit-probe'])
def test_tools_refuse_nan_and_integer_weights(setup, tmp_path, capsys,
                                              tool):
    state = dict(setup['state'])
    state['head.fc.weight'] = state['head.fc.weight'].mul(100).to(torch.int8)
    codes = tmp_path / 'codes.pth'
    torch.save({'state_dict': state}, codes)
    for path, said in ((nan_weights(tmp_path / 'nan.pth', setup['state']),
                        'NaN or inf'), (codes, 'torch.int8')):
        argv = {'maps': [setup['config'], path, setup['image'],
                         '--out-dir', tmp_path / 'maps'],
                'export-onnx': [setup['config'], path,
                                tmp_path / 'out.onnx'],
                'fit-probe': [setup['config'], path, '--num', 2]}[tool]
        status, err = run([tool, *argv], capsys)
        line = one_error_line(err, tool)
        assert status == 2 and said in line and path.name in line
        assert 'tracing' not in line.lower()  # not blamed on tracing
    assert not (tmp_path / 'maps').exists()
    assert not (tmp_path / 'out.onnx').exists()


# 7. export-onnx overwrote the previous file in place ---------------------
def test_failed_export_leaves_the_previous_file(setup, tmp_path, capsys,
                                                monkeypatch):
    pytest.importorskip('onnx')
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'previous good export')

    def full_disk(graph, args, path, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'half a model')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch.onnx, 'export', full_disk)
    status, err = run(['export-onnx', setup['config'], setup['good'], out],
                      capsys)
    assert status == 2
    line = one_error_line(err, 'export-onnx')
    assert 'No space left' in line and 'model.onnx' in line
    assert out.read_bytes() == b'previous good export'
    assert os.listdir(tmp_path) == ['model.onnx']  # no temporary file


def test_infer_onnx_refuses_a_truncated_file(setup, tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    data = onnx_model()
    model = tmp_path / 'half.onnx'
    model.write_bytes(data[:len(data) // 2])
    status, err = run(['infer-onnx', model, setup['image']], capsys)
    assert status == 2 and 'half.onnx' in one_error_line(err, 'infer-onnx')


# Tracebacks where one sentence is promised --------------------------------
@pytest.fixture(scope='module')
def runner(setup):
    """A real runner of the tiny config, for the hooks."""
    from mmengine.config import Config
    cfg = Config.fromfile(setup['config'])
    cfg.work_dir = str(setup['root'] / 'runner')
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize('checkpoint, said', [
    (3, 'holds a int'),
    ([1, 2], 'holds a list'),
    (None, 'holds a NoneType'),
    ({'state_dict': None}, "'state_dict' that is a NoneType"),
    ({'state_dict': {3: torch.zeros(1)}}, 'key 3 that is a int'),
    ('sparse', 'sparse_coo tensor, not a dense one'),
])
def test_odd_state_dicts_at_the_match_check(setup, runner, checkpoint, said):
    if checkpoint == 'sparse':
        state = dict(setup['state'])
        state['head.fc.weight'] = state['head.fc.weight'].to_sparse()
        checkpoint = {'state_dict': state}
    with pytest.raises(CheckpointMismatchError, match=said):
        CheckpointMatchHook().after_load_checkpoint(runner, checkpoint)


def test_complex_logged_values_are_not_resumed(runner):
    from mmengine.logging import HistoryBuffer
    good, bad = HistoryBuffer(), HistoryBuffer()
    good.update(1.0)
    bad._log_history = np.array([1 + 2j])
    checkpoint = {'meta': {}, 'message_hub': {
        'log_scalars': {'train/loss': good, 'train/odd': bad},
        'runtime_info': {}, 'resumed_keys': {}}}
    dropped = sanitize_checkpoint(checkpoint, runner)
    assert list(checkpoint['message_hub']['log_scalars']) == ['train/loss']
    assert any("log_scalars['train/odd']" in d for d in dropped)


@pytest.mark.parametrize('make', [empty_image, huge_header_png])
@pytest.mark.parametrize('tool', ['maps', 'infer-onnx'])
def test_empty_and_huge_images_are_one_sentence(setup, tmp_path, capsys,
                                                make, tool):
    image = make(tmp_path / 'bad.png')
    if tool == 'maps':
        argv = [setup['config'], setup['good'], image, '--out-dir',
                tmp_path / 'out']
    else:
        pytest.importorskip('onnxruntime')
        argv = [onnx_file(tmp_path / 'm.onnx'), image]
    status, err = run([tool, *argv], capsys)
    assert status == 2
    line = one_error_line(err, tool)
    assert 'bad.png' in line and ('empty' in line or 'header' in line)


@pytest.mark.parametrize('tool', ['train', 'test'])
@pytest.mark.parametrize('text, said', [
    ('model = dict(\n', 'syntax'),
    ("custom_imports = dict(imports=['no_such_module_x'])\n",
     "no module named 'no_such_module_x'"),
])
def test_broken_configs_are_one_sentence(setup, tmp_path, capsys, tool,
                                         text, said):
    config = tmp_path / 'broken.py'
    config.write_text(text)
    argv = [config] if tool == 'train' else [config, setup['good']]
    status, err = run([tool, *argv, '--work-dir', tmp_path / 'w'], capsys)
    assert status == 2 and said in one_error_line(err, tool).lower()


def test_directory_given_as_checkpoint_to_export_gapfc(setup, tmp_path,
                                                       capsys):
    folder = tmp_path / 'epoch_1.pth'
    folder.mkdir()
    config = write_config(tmp_path / 'saol.py', tmp_path, tmp_path / 'w',
                          SAOL_MODEL)
    status, err = run(['export-gapfc', config, folder, tmp_path / 'out'],
                      capsys)
    assert status == 2
    assert 'is a directory' in one_error_line(err, 'export-gapfc')


def test_directory_at_a_temporary_or_checkpoint_name(tmp_path, runner):
    """A folder named like an interrupted write's temporary file is left
    alone; one at a file's name is a sentence naming it."""
    from mmsaol.engine import atomic_write
    from mmsaol.engine.hooks.atomic_file import is_temp_file
    name = '.epoch_1.pth.123.0123abcd.tmp'
    assert is_temp_file(name)
    (tmp_path / name).mkdir()
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'AtomicCheckpointHook')
    saved = runner._work_dir
    runner._work_dir = str(tmp_path)
    try:
        hook.out_dir = str(tmp_path)
        hook.before_train(runner)
    finally:
        runner._work_dir = saved
    assert (tmp_path / name).is_dir()
    (tmp_path / 'epoch_2.pth').mkdir()
    with pytest.raises(OSError) as raised:
        atomic_write(b'x', tmp_path / 'epoch_2.pth')
    explained = work_dir_error(raised.value, str(tmp_path))
    assert isinstance(explained, WorkDirError)
    assert 'epoch_2.pth' in str(explained) and 'folder' in str(explained)


def test_seed_out_of_range_names_the_flag(setup, tmp_path, capsys):
    status, err = run(['train', setup['config'], '--seed', 2**40,
                       '--work-dir', tmp_path], capsys)
    assert status == 2 and '--seed' in one_error_line(err, 'train')


def test_output_folder_that_is_a_file_is_one_sentence(setup, tmp_path,
                                                      capsys):
    taken = tmp_path / 'pictures'
    taken.write_text('a file, not a folder')
    status, err = run(['maps', setup['config'], setup['good'],
                       setup['image'], '--out-dir', taken], capsys)
    assert status == 2 and 'pictures' in one_error_line(err, 'maps')
    assert taken.read_text() == 'a file, not a folder'
