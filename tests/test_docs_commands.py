"""Every command shown in README.md and the docs pages is checked.

The shell blocks (```bash) of README.md and docs/*.md are split into
commands, and each command must be one this test knows how to check, so a
command added to a page without a check fails here (synopses with
placeholders in brackets are ```text blocks):

- the two quick-start commands: command 2 is what ``.ci/run`` runs (the
  line must be there verbatim); command 1's install is checked against the
  package metadata, its flags and config are checked here, and
  ``tests/tools/test_train_test_tools.py`` runs the same entry on the demo
  config for a few iterations (the full 8 epochs take minutes);
- ``pip install -e ".[EXTRA]"``: the extra exists in pyproject.toml;
- ``sphinx-build ...``: the build ``tests/test_docs.py`` runs, same flags;
- ``mmsaol TOOL ...`` and ``python tools/SCRIPT.py ...``: the tool's own
  parser (``build_parser()`` of ``mmsaol/apis/<tool>.py``, and mmpretrain's
  parser for ``train``/``test``) accepts the flags, and the config the
  command names builds with mmengine's ``Config``; commands that need a
  trained checkpoint, data or a GPU are not run;
- ``bash tools/SCRIPT.sh CONFIG ...`` (environment variables before it
  allowed): the script exists and the config builds;
- ``mim train|test|run mmsaol ...``: openmim runs the same scripts and
  configs from the installed package: the script and config exist;
- the few commands that are not mmsaol's (installing the Fashion-MNIST data
  package, mmpretrain's own test script on an exported model) are listed in
  :data:`NOT_OURS` with why.

Placeholders in capitals (``CONFIG``, ``CKPT.pth``) stand for the user's
files: the flags are still parsed, the config is not built.
"""
from __future__ import annotations

import glob
import importlib
import os.path as osp
import re
import shlex
import sys
from typing import List, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = ('README.md', *sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md'))))
#: Commands of other programs, with why they are not run or parsed here.
NOT_OURS = {
    'apt-get install dataset-fashion-mnist':
        "Debian's package of the Fashion-MNIST files (study data)",
    'python <site-packages>/mmpretrain/.mim/tools/test.py '
    'exported/saol_demo_gapfc.py exported/saol_demo_gapfc.pth':
        "mmpretrain's own test script on an exported model "
        '(tests/apis/test_export_gapfc.py tests the export)',
}
ENV = re.compile(r'^[A-Z_]+=\S*$')
FENCE = re.compile(r'^```(?:bash|shell|sh|console)\n(.*?)^```$',
                   flags=re.M | re.S)
COMMAND_1 = 'pip install -e . && python tools/train.py configs/saol_demo.py'
COMMAND_2 = 'pip install -e ".[tests]" && python -m pytest -q tests'


def shell_lines(text: str) -> List[str]:
    """The command lines of a page's shell blocks: continuation lines
    joined, comments and blank lines dropped."""
    lines: List[str] = []
    for block in FENCE.findall(text):
        block = re.sub(r'\\\n\s*', ' ', block)
        for line in block.splitlines():
            line = line.split(' #', 1)[0].strip()
            if line and not line.startswith('#'):
                lines.append(line)
    return lines


def page_commands() -> List[Tuple[str, str]]:
    """(page, command) for every command of the pages, ``&&`` split."""
    found = []
    for page in PAGES:
        with open(osp.join(REPO, page)) as f:
            for line in shell_lines(f.read()):
                for command in line.split('&&'):
                    found.append((page, command.strip()))
    return found


COMMANDS = page_commands()


def test_pages_show_the_two_commands_unchanged() -> None:
    for page in ('README.md', osp.join('docs', 'get_started.md')):
        with open(osp.join(REPO, page)) as f:
            lines = shell_lines(f.read())
        assert COMMAND_1 in lines and COMMAND_2 in lines, page
    with open(osp.join(REPO, '.ci', 'run')) as f:
        assert COMMAND_2 in f.read().splitlines()


def tool_for(argv: List[str]):
    """The ``mmsaol`` tool a command line runs, and its arguments."""
    from mmsaol.apis.entry import TOOLS, TOOLS_BY_NAME
    if argv[0] == 'mmsaol':
        return TOOLS_BY_NAME[argv[1]], argv[2:]
    if argv[:2] == ['python', '-m'] and argv[2] == 'mmsaol':
        return TOOLS_BY_NAME[argv[3]], argv[4:]
    script = osp.splitext(osp.basename(argv[1]))[0]
    (tool, ) = [t for t in TOOLS if t.module == f'mmsaol.apis.{script}']
    return tool, argv[2:]


def check_config(path: str) -> None:
    """The config file loads with mmengine and names a model (not for a
    placeholder such as ``CONFIG``)."""
    if path.isupper():
        return
    if path.startswith('work_dirs/'):
        # the copy of configs/<name>.py that training writes to its work dir
        path = osp.join('configs', osp.basename(path))
    from mmengine.config import Config

    import mmsaol  # noqa: F401  (mmsaol:: bases)
    from mmsaol.compat.config import resolve_config
    cfg = Config.fromfile(resolve_config(path))
    assert 'model' in cfg, path


def check_tool(argv: List[str]) -> None:
    tool, args = tool_for(argv)
    module = importlib.import_module(tool.module)
    if tool.name in ('train', 'test'):
        # mmsaol's flags, then mmpretrain's own parser and merge_args
        from mmsaol.apis import cli
        _, _, cfg = cli.mmpretrain_setup(tool.name, module.build_parser(),
                                         args)
        assert 'model' in cfg
        return
    parsed = module.build_parser().parse_args(args)
    config = getattr(parsed, 'config', None)
    if config and config.endswith('.py'):
        check_config(config)


@pytest.mark.parametrize('page,command', COMMANDS,
                         ids=[c for _, c in COMMANDS])
def test_command(page: str, command: str, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    argv = shlex.split(command)
    while argv and ENV.match(argv[0]):
        argv.pop(0)
    if ' '.join(argv) in NOT_OURS:
        return
    if argv[:3] == ['pip', 'install', '-e']:
        extra = re.fullmatch(r'\.(?:\[(\w+)\])?', argv[3])
        assert extra, command
        if extra.group(1):
            if sys.version_info < (3, 11):
                pytest.skip('tomllib needs Python 3.11')
            import tomllib
            with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
                extras = tomllib.load(f)['project']['optional-dependencies']
            assert extra.group(1) in extras, command
    elif argv[:3] == ['python', '-m', 'pytest']:
        with open(osp.join(REPO, '.ci', 'run')) as f:
            assert command in f.read(), 'CI runs the test command'
    elif argv[0] == 'sphinx-build':
        from test_docs import SPHINX_FLAGS
        assert argv[1:-2] == list(SPHINX_FLAGS), command
        assert argv[-2:] == ['docs', 'docs/_build/html']
    elif argv[0] == 'bash':
        assert osp.isfile(argv[1]), command
        if argv[2:] and argv[2].endswith('.py'):
            check_config(argv[2])
    elif argv[:1] == ['mim'] and argv[2] == 'mmsaol':
        if argv[1] == 'run':
            assert osp.isfile(osp.join('tools', f'{argv[3]}.py')), command
            check_config(osp.join('configs', argv[4]))
        else:
            assert argv[1] in ('train', 'test'), command
            check_config(osp.join('configs', argv[3]))
    elif argv[0] == 'mmsaol' or (argv[0] == 'python' and (
            argv[1].startswith('tools/') or argv[1:3] == ['-m', 'mmsaol'])):
        check_tool(argv)
    else:
        pytest.fail(f'{page} shows `{command}`, which no check covers: add '
                    'one to tests/test_docs_commands.py.')
