"""The ``mmsaol`` command (console script and ``python -m mmsaol``), and
the scripts of ``tools/``, which run the same ``main`` of each tool."""
from __future__ import annotations

import glob
import importlib
import importlib.util
import os.path as osp
import re
import runpy
import subprocess
import sys
from typing import List

import pytest

from mmsaol.apis import entry
from mmsaol.apis.cli import mmpretrain_tool
from mmsaol.apis.entry import TOOLS, Tool, load_entry, main

SCRIPT = osp.join(osp.dirname(sys.executable), 'mmsaol')
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: ``tools/*.py`` and the ``mmsaol`` command line that does the same.
SCRIPTS = {osp.basename(path): [tool.name for tool in TOOLS
                                if tool.module.rsplit('.', 1)[-1]
                                == osp.basename(path)[:-3]]
           for path in glob.glob(osp.join(REPO, 'tools', '*.py'))}
SCRIPTS['demo_study.py'] = ['study', 'demo']


def run(command: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True,
                          timeout=600)


def assert_lists_tools(output: str) -> None:
    for tool in TOOLS:
        line = re.search(rf'^\s+{re.escape(tool.name)}\s+(.+)$', output,
                         re.MULTILINE)
        assert line, f'{tool.name} is not listed:\n{output}'
        assert line.group(1) == tool.summary


def test_console_script_lists_the_tools():
    assert osp.isfile(SCRIPT), (
        f'{SCRIPT} is missing: reinstall mmsaol (pip install -e .) to get '
        'the console script.')
    result = run([SCRIPT, '--help'])
    assert result.returncode == 0, result.stderr
    assert_lists_tools(result.stdout)


def test_python_m_lists_the_tools():
    result = run([sys.executable, '-m', 'mmsaol', '--help'])
    assert result.returncode == 0, result.stderr
    assert_lists_tools(result.stdout)


def mmpretrain_train_flags() -> List[str]:
    """Every option of the installed mmpretrain's tools/train.py."""
    path = mmpretrain_tool('train').__file__
    with open(path) as f:
        source = f.read()
    flags = re.findall(r"add_argument\(\s*'(--[\w-]+)'", source)
    assert '--cfg-options' in flags and '--resume' in flags
    return flags


def test_train_help_shows_mmpretrain_flags(capsys):
    """``mmsaol train --help`` (in this process: the console script itself
    is run above)."""
    with pytest.raises(SystemExit) as exit_info:
        main(['train', '--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert 'usage: mmsaol train' in out
    for flag in [*mmpretrain_train_flags(), '--seed']:
        assert flag in out, flag


@pytest.mark.parametrize('tool', TOOLS, ids=[t.name for t in TOOLS])
def test_every_tool_answers_help(tool, capsys):
    """``mmsaol <tool> --help`` prints the tool's usage; a tool this
    installation lacks (or whose optional dependencies are missing) says so
    in one sentence."""
    with pytest.raises(SystemExit) as exit_info:
        main([tool.name, '--help'])
    out, err = capsys.readouterr()
    if importlib.util.find_spec(tool.module) is None:
        assert exit_info.value.code == 2
        assert 'is not part of this installation' in err
    elif exit_info.value.code == 2 and tool.extra:
        assert f"pip install 'mmsaol[{tool.extra}]'" in err
    else:
        assert exit_info.value.code == 0, err
        assert re.search(r'^usage: ', out, re.MULTILINE), out


def test_no_arguments_and_version(capsys):
    assert main([]) == 0
    assert_lists_tools(capsys.readouterr().out)
    assert main(['--version']) == 0
    from mmsaol import __version__
    assert capsys.readouterr().out.strip() == f'mmsaol {__version__}'


def test_unknown_tool_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['trian', 'configs/saol_demo.py'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown tool 'trian': did you mean 'train'?" in err


def test_missing_tool_module(capsys):
    tool = Tool('nothing', 'mmsaol.apis.no_such_tool', 'absent')
    with pytest.raises(SystemExit) as exit_info:
        load_entry(tool)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert ("'mmsaol nothing' is not part of this installation of mmsaol "
            '(no module mmsaol.apis.no_such_tool)') in err


def test_missing_dependency_names_the_extra(tmp_path, monkeypatch, capsys):
    (tmp_path / 'needs_absent.py').write_text(
        'import mmsaol_absent_dependency\n\ndef main(argv):\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    tool = Tool('onnx-thing', 'needs_absent', 'x', extra='deploy')
    with pytest.raises(SystemExit) as exit_info:
        load_entry(tool)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert ("needs the Python package 'mmsaol_absent_dependency', which is "
            "not installed: pip install 'mmsaol[deploy]'") in err


def test_missing_entry_function(tmp_path, monkeypatch, capsys):
    (tmp_path / 'no_main.py').write_text('VALUE = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit):
        load_entry(Tool('x', 'no_main', 'x'))
    assert 'has no entry function main(argv)' in capsys.readouterr().err


def test_tool_sees_its_mmsaol_name_and_arguments(tmp_path, monkeypatch):
    (tmp_path / 'echo_tool.py').write_text(
        'import sys\nSEEN = []\n\n'
        'def main(argv):\n    SEEN.append((sys.argv[0], argv))\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = list(sys.argv)
    entry.run_tool(Tool('echo', 'echo_tool', 'x'), ['a', '--b'])
    assert sys.modules['echo_tool'].SEEN == [('mmsaol echo', ['a', '--b'])]
    assert sys.argv == saved


def test_every_tool_is_a_main_of_its_apis_module():
    for tool in TOOLS:
        assert tool.module.startswith('mmsaol.apis.'), tool
        assert tool.function == 'main', tool
    assert len({tool.module for tool in TOOLS}) == len(TOOLS)


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_script_and_command_reach_the_same_main(script, monkeypatch):
    """``python tools/<script>`` and ``mmsaol <tool>`` call one function
    with the same arguments (the function is replaced by a recorder here,
    in the tool's module, where both look it up)."""
    words = SCRIPTS[script]
    assert words, f'tools/{script} is no tool of the mmsaol command'
    tool = entry.TOOLS_BY_NAME[words[0]]
    module = importlib.import_module(tool.module)
    calls = []

    def record(argv=None):
        calls.append(list(sys.argv[1:] if argv is None else argv))

    monkeypatch.setattr(module, tool.function, record)
    monkeypatch.setattr(sys, 'argv', [osp.join(REPO, 'tools', script),
                                      'a.py', '--b', '1'])
    runpy.run_path(sys.argv[0], run_name='__main__')
    assert main([*words, 'a.py', '--b', '1']) == 0
    assert calls[0] == calls[1] == [*words[1:], 'a.py', '--b', '1']
    with open(osp.join(REPO, 'tools', script)) as f:
        source = f.read()
    # Thin: the script imports the function and calls it, nothing else.
    assert re.findall(r'^(?:from|import) .*$', source, re.MULTILINE) in (
        [f'from {tool.module} import main'],
        ['import sys', f'from {tool.module} import main'])
