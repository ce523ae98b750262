"""The wheel: static metadata, LICENSE, and the configs, tools and model
index shipped in ``mmsaol/.mim``; installed on its own (not the editable
checkout) it finds them.

The wheel is built offline from a copy of the source (``pip wheel --no-deps
--no-build-isolation``), twice: once as the environment is, once with a
full ``mmcv`` distribution visible to the build, which must not change a
byte of the metadata.
"""
from __future__ import annotations

import email
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile
from typing import Dict, List

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

from mmsaol.version import __version__

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: What the build reads: the sdist's content (MANIFEST.in) and the package.
SOURCE_FILES = ('pyproject.toml', 'setup.py', 'MANIFEST.in', 'README.md',
                'LICENSE', 'CHANGELOG.md', 'model-index.yml')
SOURCE_DIRS = ('mmsaol', 'configs', 'tools')
IGNORED = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim')


def copy_source(dst: str) -> None:
    os.makedirs(dst)
    for name in SOURCE_FILES:
        if osp.exists(osp.join(REPO, name)):
            shutil.copy(osp.join(REPO, name), dst)
    for name in SOURCE_DIRS:
        shutil.copytree(osp.join(REPO, name), osp.join(dst, name),
                        ignore=IGNORED)


def build_wheel(source: str, out: str, env: Dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--no-index', '-q', '-w', out, source],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = [f for f in os.listdir(out) if f.endswith('.whl')]
    assert len(wheels) == 1, wheels
    return osp.join(out, wheels[0])


def fake_full_mmcv(root: str) -> str:
    """A folder that makes ``importlib.metadata`` report mmcv 2.2.0 (the
    distribution a full mmcv installs) when it is on ``PYTHONPATH``."""
    info = osp.join(root, 'mmcv-2.2.0.dist-info')
    os.makedirs(info)
    with open(osp.join(info, 'METADATA'), 'w') as f:
        f.write('Metadata-Version: 2.1\nName: mmcv\nVersion: 2.2.0\n')
    return root


@pytest.fixture(scope='module')
def wheels(tmp_path_factory) -> Dict[str, str]:
    root = tmp_path_factory.mktemp('packaging')
    source = str(root / 'src')
    copy_source(source)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    plain = build_wheel(source, str(root / 'plain'), env)
    shutil.rmtree(osp.join(source, 'build'), ignore_errors=True)
    full_env = dict(env, PYTHONPATH=fake_full_mmcv(str(root / 'fake')))
    probe = subprocess.run(
        [sys.executable, '-c', "import importlib.metadata as m; "
         "print(m.distribution('mmcv').version)"],
        capture_output=True, text=True, env=full_env)
    assert probe.stdout.strip() == '2.2.0', 'the fake mmcv is not visible'
    full = build_wheel(source, str(root / 'full-mmcv'), full_env)
    return dict(plain=plain, full=full, root=str(root))


def read(wheel: str, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(suffix)]
        assert len(names) == 1, (suffix, names)
        return z.read(names[0]).decode()


def requirements(wheel: str) -> List[Requirement]:
    meta = email.message_from_string(read(wheel, '.dist-info/METADATA'))
    return [Requirement(r) for r in meta.get_all('Requires-Dist')]


def test_metadata_does_not_depend_on_the_build_machine(wheels):
    assert (read(wheels['plain'], '.dist-info/METADATA')
            == read(wheels['full'], '.dist-info/METADATA'))
    assert (read(wheels['plain'], '.dist-info/entry_points.txt')
            == read(wheels['full'], '.dist-info/entry_points.txt'))


@pytest.mark.skipif(tomllib is None, reason='tomllib needs Python 3.11')
def test_requirements_are_static():
    with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
        project = tomllib.load(f)['project']
    assert project['dynamic'] == ['version']


def test_exactly_one_mmcv_requirement(wheels):
    mmcv = [r for r in requirements(wheels['plain'])
            if r.name.lower().startswith('mmcv')]
    assert len(mmcv) == 1, [str(r) for r in mmcv]
    (req, ) = mmcv
    # mmcv-lite for every install (README command 1 on a fresh machine),
    # within mmpretrain 1.2.0's mmcv range; not behind an extra or marker.
    assert req.name == 'mmcv-lite'
    assert req.marker is None
    assert '2.2.0' in req.specifier and '2.4.0' not in req.specifier


def test_metadata_fields(wheels):
    text = read(wheels['plain'], '.dist-info/METADATA')
    meta = email.message_from_string(text)
    assert meta['Name'] == 'mmsaol'
    assert meta['Version'] == __version__
    assert meta['License-Expression'] == 'Apache-2.0'
    extras = {e: [r.name for r in requirements(wheels['plain'])
                  if r.marker and r.marker.evaluate({'extra': e})]
              for e in meta.get_all('Provides-Extra')}
    assert 'pytest' in extras['tests'] and 'ruff' in extras['tests']
    assert set(extras['deploy']) == {'onnx', 'onnxruntime', 'onnxscript'}
    entry_points = read(wheels['plain'], '.dist-info/entry_points.txt')
    assert 'mmsaol = mmsaol.apis.entry:main' in entry_points


def test_wheel_ships_license_configs_tools_and_index(wheels):
    with zipfile.ZipFile(wheels['plain']) as z:
        names = set(z.namelist())
    with open(osp.join(REPO, 'LICENSE')) as f:
        license_text = f.read()
    assert 'Apache License\n                           Version 2.0' in (
        license_text)
    assert read(wheels['plain'], '.dist-info/licenses/LICENSE') == (
        license_text)
    source = osp.join(wheels['root'], 'src')
    shipped = []
    for folder in ('configs', 'tools'):
        for dirpath, _, files in os.walk(osp.join(source, folder)):
            shipped += [osp.relpath(osp.join(dirpath, f), source)
                        for f in files]
    shipped.append('model-index.yml')
    assert 'configs/metafile.yml' in shipped
    missing = [p for p in shipped
               if f'mmsaol/.mim/{p.replace(os.sep, "/")}' not in names]
    assert not missing
    assert not [n for n in names if '__pycache__' in n or
                n.startswith('tests/')]


def test_installed_wheel_finds_its_configs_and_index(wheels, tmp_path):
    """The wheel installed on its own (ahead of the editable checkout on
    ``PYTHONPATH``) reads configs, tools and model index from its
    ``mmsaol/.mim``, and its console script runs."""
    target = tmp_path / 'site'
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
         '-q', '--target', str(target), wheels['plain']],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (tmp_path / 'child.py').write_text("_base_ = ['mmsaol::saol_demo.py']\n")
    check = textwrap.dedent(f"""
        import os.path as osp, runpy, sys
        import mmsaol
        from mmengine.config import Config
        from mmpretrain import list_models
        from mmsaol.compat.config import mim_root, resolve_config
        mim = osp.join({str(target)!r}, 'mmsaol', '.mim')
        assert mmsaol.__file__.startswith({str(target)!r}), mmsaol.__file__
        assert mim_root() == mim, mim_root()
        assert resolve_config('configs/saol_demo.py').startswith(mim)
        assert Config.fromfile('child.py').model.head.type == 'SAOLHead'
        print('MODELS', ' '.join(list_models('*saol*')))
        sys.argv = ['mmsaol', '--help']
        try:
            runpy.run_path(osp.join({str(target)!r}, 'bin', 'mmsaol'),
                           run_name='__main__')
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        """)
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, '-c', check], cwd=tmp_path,
                            capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    models = next(line for line in result.stdout.splitlines()
                  if line.startswith('MODELS')).split()[1:]
    assert 'saol_demo' in models
    assert 'export-gapfc' in result.stdout  # the tool list of --help
