"""The ``mmsaol`` command: ``mmsaol <tool> [flags]`` and ``python -m mmsaol``.

Each tool is the ``main(argv)`` of a module ``mmsaol.apis.<script>``, the
same function the script ``tools/<script>.py`` runs, so both take the same
flags (``train`` and ``test`` are mmpretrain's own ``tools/train.py`` and
``tools/test.py``). A tool's module is imported only when it runs, so
``mmsaol --help`` costs the import of mmsaol itself and no tool.
"""
from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

PROG = 'mmsaol'


@dataclass(frozen=True)
class Tool:
    """One ``mmsaol`` tool.

    Args:
        name (str): The word after ``mmsaol``.
        module (str): Module of the entry function.
        summary (str): One line for ``mmsaol --help``.
        extra (str, optional): The ``pip install 'mmsaol[<extra>]'`` extra
            that brings the tool's optional dependencies.
        function (str): Entry function, called with the remaining
            command-line arguments as a list. Defaults to ``'main'``.
    """

    name: str
    module: str
    summary: str
    extra: Optional[str] = None
    function: str = 'main'


TOOLS = (
    Tool('train', 'mmsaol.apis.train',
         "train a config (mmpretrain's tools/train.py flags, plus --seed)"),
    Tool('test', 'mmsaol.apis.test',
         "test a checkpoint (mmpretrain's tools/test.py flags, plus --head)"),
    Tool('maps', 'mmsaol.apis.visualize_maps',
         "draw SAOL's attention and class maps (CAM for GAP-FC models)"),
    Tool('wsol', 'mmsaol.apis.eval_wsol',
         'weakly-supervised localisation accuracy of a checkpoint'),
    Tool('export-gapfc', 'mmsaol.apis.export_gapfc',
         'export the distilled GAP-FC branch as a stock mmpretrain model'),
    Tool('export-onnx', 'mmsaol.apis.export_onnx',
         'export a model to ONNX', extra='deploy'),
    Tool('infer-onnx', 'mmsaol.apis.infer_onnx',
         'run an exported ONNX model with onnxruntime', extra='deploy'),
    Tool('benchmark', 'mmsaol.apis.benchmark',
         'parameters, MACs, speed and memory of SAOL against GAP-FC'),
    Tool('study', 'mmsaol.apis.study',
         'train and evaluate the variants of a study over seeds'),
    Tool('fit-probe', 'mmsaol.apis.fit_probe',
         "a checkpoint's fit on training vs test images and each loss's "
         'gradient into the last stage'),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}


def usage() -> str:
    """``mmsaol --help``: the tools, one line each."""
    width = max(len(tool.name) for tool in TOOLS)
    lines = [f'usage: {PROG} <tool> [flags]   ({PROG} <tool> --help for the '
             "tool's flags)", '', 'tools:']
    lines += [f'  {tool.name:<{width}}  {tool.summary}' for tool in TOOLS]
    lines += ['', 'Configs are looked up relative to the current directory, '
              'then in the installed', "package's configs (e.g. "
              f'{PROG} train configs/saol_demo.py).']
    return '\n'.join(lines)


def _fail(message: str) -> SystemExit:
    print(f'{PROG}: error: {message}', file=sys.stderr)
    return SystemExit(2)


def load_entry(tool: Tool) -> Callable[[List[str]], object]:
    """Import the entry function of ``tool``.

    Raises:
        SystemExit: the tool's module, one of its dependencies or its entry
            function is missing (status 2, one sentence saying what to
            install).
    """
    try:
        module = importlib.import_module(tool.module)
    except ModuleNotFoundError as error:
        missing = error.name or ''
        if missing.split('.')[0] == 'mmsaol':
            raise _fail(
                f"'{PROG} {tool.name}' is not part of this installation of "
                f'mmsaol (no module {missing}): install a version of mmsaol '
                'that has it.') from None
        fix = (f"pip install 'mmsaol[{tool.extra}]'" if tool.extra
               else f'pip install {missing.split(".")[0]}')
        raise _fail(f"'{PROG} {tool.name}' needs the Python package "
                    f"'{missing}', which is not installed: {fix}.") from None
    entry = getattr(module, tool.function, None)
    if not callable(entry):
        raise _fail(f"'{PROG} {tool.name}': {tool.module} has no entry "
                    f'function {tool.function}(argv): install a version of '
                    'mmsaol that has it.')
    return entry


def run_tool(tool: Tool, argv: Sequence[str]) -> None:
    """Run ``tool`` with ``argv``; its argument parser and messages call
    it ``mmsaol <tool>``."""
    entry = load_entry(tool)
    saved = sys.argv
    sys.argv = [f'{PROG} {tool.name}', *argv]
    try:
        entry(list(argv))
    finally:
        sys.argv = saved


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mmsaol <tool> [flags]``; returns the exit status (0) or raises
    ``SystemExit``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage())
        return 0
    if argv[0] == '--version':
        from mmsaol.version import __version__
        print(f'{PROG} {__version__}')
        return 0
    tool = TOOLS_BY_NAME.get(argv[0])
    if tool is None:
        close = difflib.get_close_matches(argv[0], TOOLS_BY_NAME, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ''
        raise _fail(f"unknown tool '{argv[0]}': {hint}the tools are "
                    f"{', '.join(TOOLS_BY_NAME)} ({PROG} --help).")
    run_tool(tool, argv[1:])
    return 0
