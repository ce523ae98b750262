"""Red team: every tool of the ``mmsaol`` console script, and the Python
APIs that build a model from a file, on the same hostile files.

For every (tool, hostile file) the promise is checked: the file never
becomes code (no marker file appears), never a deletion (the victim file
and every file around it stay), never a crash (the tool returns or exits
with status 2, no exception escapes), and a refusal is exactly one line
``mmsaol <tool>: error (<type>): ...`` on stderr, with no traceback.

Tools run in this process through ``mmsaol.apis.entry.main`` (the console
script's own dispatch). :data:`TOOL_ARGUMENTS` says where each tool takes
a file; :func:`test_every_tool_of_the_console_script_is_covered` fails
when the console script lists a tool that has no entry there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import torch
from hostile_files import (
    GAPFC_MODEL,
    SAOL_MODEL,
    empty_image,
    hostile_checkpoints,
    hostile_onnx_files,
    hostile_study,
    huge_header_png,
    meta_config_checkpoint,
    tree_snapshot,
    weights,
    write_config,
    write_images,
)

from mmsaol.apis import entry

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


@dataclass
class Arena:
    """The files of one red-team session."""

    root: Path
    marker: Path
    victim: Path
    gapfc_config: Path
    saol_config: Path
    image: Path
    files: Dict[str, Path]
    saol_files: Dict[str, Path]

    def out(self, name: str) -> str:
        return str(self.root / 'out' / name)


@pytest.fixture(scope='module')
def arena(tmp_path_factory) -> Arena:
    root = tmp_path_factory.mktemp('red_team')
    marker = root / 'MARKER'
    victim = root / 'victim' / 'precious.pth'
    victim.parent.mkdir()
    victim.write_bytes(b'keep me')
    data = write_images(root / 'data', count=1)
    gapfc = write_config(root / 'gapfc.py', data, root / 'work_gapfc',
                         GAPFC_MODEL)
    saol = write_config(root / 'saol.py', data, root / 'work_saol',
                        SAOL_MODEL)
    files = dict(hostile_checkpoints(root / 'ckpt', weights(GAPFC_MODEL),
                                     marker, victim))
    files.update(hostile_onnx_files(root / 'onnx', marker))
    files['image_empty'] = empty_image(root / 'empty.png')
    files['image_huge_header'] = huge_header_png(root / 'huge.png')
    files['config_syntax_error'] = root / 'syntax.py'
    files['config_syntax_error'].write_text('model = dict(\n')
    files['config_missing_import'] = root / 'missing_import.py'
    files['config_missing_import'].write_text(
        "custom_imports = dict(imports=['no_such_module_red_team'])\n")
    files['study_traversal'] = hostile_study(
        root / 'study_traversal.json', gapfc, name='../../escaped')
    files['study_work_dir'] = hostile_study(
        root / 'study_work_dir.json', gapfc,
        options=[f'--work-dir={root / "elsewhere"}'])
    saol_files = dict(files)
    saol_files['meta_config'] = meta_config_checkpoint(
        root / 'ckpt' / 'meta_config_saol.pth', weights(SAOL_MODEL), marker,
        victim)
    return Arena(root, marker, victim, gapfc, saol,
                 root / 'data' / 'a' / '0.png', files, saol_files)


#: Where each tool takes a file: ``argv(arena, file)``, and the kinds of
#: hostile file it gets (prefixes of the names in ``arena.files``).
ArgvFn = Callable[[Arena, Path], List[str]]
CHECKPOINTS = ('pickle_payload', 'meta_config', 'object_dtype',
               'truncated_zip', 'zip_bomb', 'nan_weights', 'int8_weights',
               'sparse_weight', 'odd_state_dict', 'directory')
CONFIGS = ('config_', 'pickle_payload')
ONNX = ('onnx_', 'pickle_payload')
IMAGES = ('image_', )


def _gapfc(a: Arena) -> str:
    return str(a.gapfc_config)


TOOL_ARGUMENTS: Dict[str, List[tuple]] = {
    'train': [
        (lambda a, f: [_gapfc(a), '--resume', str(f), '--work-dir',
                       a.out('train')], CHECKPOINTS),
        (lambda a, f: [str(f)], CONFIGS),
    ],
    'test': [
        (lambda a, f: [_gapfc(a), str(f), '--work-dir', a.out('test')],
         CHECKPOINTS),
        (lambda a, f: [str(f), str(a.victim)], CONFIGS),
    ],
    'maps': [
        (lambda a, f: [_gapfc(a), str(f), str(a.image), '--out-dir',
                       a.out('maps')], CHECKPOINTS),
        (lambda a, f: [_gapfc(a), str(a.files['meta_config']), str(f),
                       '--out-dir', a.out('maps_images')], IMAGES),
    ],
    'wsol': [
        (lambda a, f: [_gapfc(a), str(f), '--map', 'cam', '--work-dir',
                       a.out('wsol')], CHECKPOINTS),
        (lambda a, f: [str(f), str(a.victim)], CONFIGS),
    ],
    'export-gapfc': [
        (lambda a, f: [str(a.saol_config), str(f), a.out('gapfc')],
         CHECKPOINTS),
    ],
    'export-onnx': [
        (lambda a, f: [_gapfc(a), str(f), a.out('model.onnx')],
         tuple(c for c in CHECKPOINTS if c != 'meta_config')),
        (lambda a, f: [str(f), str(a.victim), a.out('model.onnx')],
         CONFIGS),
    ],
    'infer-onnx': [
        (lambda a, f: [str(f), str(a.image)], ONNX),
        (lambda a, f: [str(a.root / 'onnx' / 'good.onnx'), str(f)], IMAGES),
    ],
    'benchmark': [
        (lambda a, f: [str(f), '--input-size', '16', '--batch-size', '1',
                       '--iters', '1', '--warmup', '0', '--repeats', '1'],
         CONFIGS),
    ],
    'study': [
        (lambda a, f: [str(f), '--work-dir', a.out('study_runs'),
                       '--results-dir', a.out('study_results')],
         ('study_', )),
    ],
    'fit-probe': [
        (lambda a, f: [_gapfc(a), str(f), '--num', '2', '--grad-batches',
                       '1'], CHECKPOINTS),
    ],
}


def cases() -> List[tuple]:
    """(tool, slot, hostile file name) of every red-team run."""
    names = list(CHECKPOINTS) + [
        'onnx_truncated', 'onnx_empty', 'onnx_unknown_domain',
        'onnx_external_outside', 'onnx_huge_initializer',
        'onnx_pipeline_os_system', 'onnx_pipeline_nested',
        'onnx_metadata_not_json', 'onnx_input_size_zero',
        'onnx_classes_not_list', 'onnx_pipeline_dict', 'image_empty',
        'image_huge_header', 'config_syntax_error', 'config_missing_import',
        'study_traversal', 'study_work_dir']
    found = []
    for tool, slots in TOOL_ARGUMENTS.items():
        for slot, (_, kinds) in enumerate(slots):
            found += [(tool, slot, name) for name in names
                      if any(name.startswith(k) for k in kinds)]
    return found


ERROR_LINE = re.compile(r'^mmsaol [\w-]+: error \(\w+\): \S')


def run_tool(argv: List[str], capsys) -> tuple:
    """``mmsaol ARGV`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        entry.main(argv)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def assert_promise(arena: Arena, before: Dict[str, int], status,
                   err: str) -> None:
    assert not arena.marker.exists(), 'a file from outside became code'
    after = tree_snapshot(arena.root)
    gone = sorted(set(before) - set(after))
    assert not gone, f'deleted: {gone}'
    assert arena.victim.read_bytes() == b'keep me'
    assert 'Traceback' not in err, err
    errors = [line for line in err.splitlines() if ': error' in line]
    if status == 0:
        assert not errors, err
    else:
        assert status == 2, (status, err)
        assert len(errors) == 1 and ERROR_LINE.match(errors[0]), err


@pytest.mark.parametrize('tool,slot,name', cases())
def test_tool_on_hostile_file(arena, tool, slot, name, capsys,
                              monkeypatch):
    monkeypatch.chdir(arena.root)
    if tool == 'infer-onnx' and slot == 1:
        _good_onnx(arena)
    files = arena.saol_files if tool == 'export-gapfc' else arena.files
    argv_of = TOOL_ARGUMENTS[tool][slot][0]
    before = tree_snapshot(arena.root)
    status, err = run_tool([tool, *argv_of(arena, files[name])], capsys)
    assert_promise(arena, before, status, err)
    if name in ('pickle_payload', 'object_dtype', 'zip_bomb') and \
            tool not in ('benchmark', 'infer-onnx', 'study') and \
            slot == 0:
        assert status == 2 and 'UnsafeCheckpointError' in err, err


def _good_onnx(arena: Arena) -> None:
    from hostile_files import onnx_model
    path = arena.root / 'onnx' / 'good.onnx'
    if not path.exists():
        path.write_bytes(onnx_model())


def test_every_tool_of_the_console_script_is_covered():
    """A tool added to the console script without hostile-file coverage
    here fails the suite."""
    listed = set(entry.TOOLS_BY_NAME)
    covered = {tool for tool, _, _ in cases()}
    assert listed == covered, (
        f'tools without red-team coverage: {sorted(listed - covered)}; '
        f'covered but not listed: {sorted(covered - listed)}')


@pytest.mark.parametrize('name', CHECKPOINTS)
def test_python_apis_on_hostile_checkpoints(arena, name):
    """mmpretrain's ``get_model`` and ``ImageClassificationInferencer``
    (what ``inference_model`` builds) read the file
    through mmsaol's loader: a refusal is one of mmsaol's user errors,
    never code or a NaN prediction."""
    from mmengine.config import Config
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    from mmsaol.apis.cli import USER_ERRORS
    before = tree_snapshot(arena.root)
    path = str(arena.files[name])
    cfg = Config.fromfile(str(arena.gapfc_config))
    for call in (lambda: get_model(cfg, pretrained=path),
                 lambda: ImageClassificationInferencer(
                     cfg, pretrained=path)(str(arena.image))):
        try:
            result = call()
        except USER_ERRORS as error:
            assert '\n' not in str(error).strip()
            assert 'Failed to find model' not in str(error)
        else:
            assert name == 'meta_config', f'{name} was accepted'
            if isinstance(result, list):  # the inferencer's predictions
                scores = torch.as_tensor(result[0]['pred_scores'])
                assert torch.isfinite(scores).all()
    assert not arena.marker.exists()
    assert set(before) <= set(tree_snapshot(arena.root))
