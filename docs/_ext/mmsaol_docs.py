"""Pages generated from the data the code uses, not from a second copy.

A line ``<!-- generated: WHAT [ARG] -->`` in a docs page is replaced, when
Sphinx reads the page, by Markdown made from the package itself:

- ``troubleshooting``: the table of :mod:`mmsaol.troubleshooting` (the rows
  the bad-input tests check against the messages really printed);
- ``study-tables NAME``: the tables of ``results/NAME/results.json`` as
  ``mmsaol study NAME --table`` prints them
  (:func:`mmsaol.apis.study.markdown_tables`);
- ``recorded-localisation NAME``: the localisation metrics the records of
  study ``NAME`` hold, for the maps that ``study-tables`` does not show
  (records scored before the current WSOL protocol, which the study tool
  no longer tabulates); nothing when it shows them all;
- ``other-studies``: the tables of every study with records that the page
  does not place with its own ``study-tables`` line (a new study shows up
  before its page text is written);
- ``tools``: one section per ``mmsaol`` tool of
  :data:`mmsaol.apis.entry.TOOLS`: its summary, the autodoc of its
  ``main`` and the ``--help`` its ``build_parser()`` prints.

An unknown name, a missing results file or a tool that does not import
stops the build with an error naming the page.

Cross-references in docstrings (``:class:`MixGeometry```) are checked
against Python, not only against the pages: the build runs in nitpicky mode,
and a reference that no page documents is accepted (shown as code, without
a link) when the name exists where the docstring stands (its module or
class, the module the object is defined in, mmsaol's public packages, the
upstream namespaces of :data:`SHORT_NAME_SCOPES`, or a full dotted path). A
name
that exists nowhere stays a warning, and with ``-W`` an error.
"""
from __future__ import annotations

import argparse
import builtins
import glob
import importlib
import inspect
import os
import os.path as osp
import re
from typing import Any, Callable, Dict, List, Optional

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

MARKER = re.compile(r'^<!-- generated: ([\w-]+)(?: ([\w.-]+))? -->$',
                    flags=re.M)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HELP_WIDTH = '79'


def troubleshooting(arg: str) -> str:
    """The troubleshooting table with its introduction."""
    from mmsaol import troubleshooting as ts
    return ts.INTRO + '\n\n' + ts.render_table()


def study_tables(name: str) -> str:
    """The generated tables of the study ``name`` from its records."""
    from mmsaol.apis import study
    path = osp.join(REPO, 'results', name, 'results.json')
    if not osp.isfile(path):
        raise ExtensionError(f'study-tables {name}: {path} does not exist; '
                             'run the study or fix the name.')
    return study.markdown_tables(study.read_results(path))


#: Localisation metrics of the records, as the first protocol stored them.
RECORDED_LOC = (('gt_known_loc', 'GT-known loc (%)'),
                ('max_box_acc', 'MaxBoxAcc (%)'),
                ('max_box_acc_v2', 'MaxBoxAccV2 (%)'),
                ('peak_in_box', 'peak in box (%)'))


def recorded_localisation(name: str) -> str:
    """The records' localisation metrics of the maps that the study's own
    tables leave out."""
    from mmsaol.apis import study
    path = osp.join(REPO, 'results', name, 'results.json')
    data = study.read_results(path)
    shown = study.markdown_tables(data)
    rows = []
    for variant, metrics in data['results'].items():
        maps = sorted({key.split('/')[0] for key in metrics
                       if key.endswith(f'/{RECORDED_LOC[0][0]}')})
        for kind in maps:
            label = study.MAP_NAMES.get(kind, kind)
            if f'| {variant} | {label} |' in shown:
                continue
            cells = [study.fmt_mean_std([float(v) for v in
                                         metrics[f'{kind}/{key}'].values()])
                     if f'{kind}/{key}' in metrics else '—'
                     for key, _ in RECORDED_LOC]
            rows.append(f'| {variant} | {label} | ' + ' | '.join(cells)
                        + ' |')
    if not rows:
        return ''
    header = ('| variant | map | '
              + ' | '.join(title for _, title in RECORDED_LOC) + ' |')
    return ('Localisation as these runs\' records '
            f'(`results/{name}/results.json`) hold it, scored by the '
            'earlier mmsaol protocol (not the standard one; described '
            'above), mean ± sample std over seeds:\n\n'
            + header + '\n|' + '---|' * (2 + len(RECORDED_LOC)) + '\n'
            + '\n'.join(rows) + '\n')


def other_studies(placed: List[str]) -> str:
    """A section per study with records that is not in ``placed``."""
    from mmsaol.apis import study
    parts = []
    for path in sorted(glob.glob(osp.join(REPO, 'results', '*',
                                          'results.json'))):
        data = study.read_results(path)
        if data['study'] in placed:
            continue
        parts.append(f'### {data["study"]}\n\n{data.get("description", "")}'
                     f'\n\n{study.markdown_tables(data)}')
    return '\n'.join(parts) if parts else 'None yet.'


def parser_help(parser: argparse.ArgumentParser, prog: str) -> str:
    """``prog --help`` at a fixed width (the terminal's is not used)."""
    saved = os.environ.get('COLUMNS')
    os.environ['COLUMNS'] = HELP_WIDTH
    try:
        parser.prog = prog
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ['COLUMNS']
        else:
            os.environ['COLUMNS'] = saved


def tools(arg: str) -> str:
    """A section per ``mmsaol`` tool: summary, ``main``'s docstring and its
    flags."""
    from mmsaol.apis.entry import TOOLS
    parts: List[str] = []
    for tool in TOOLS:
        module = importlib.import_module(tool.module)
        lines = [f'### `mmsaol {tool.name}`', '', tool.summary[0].upper() +
                 tool.summary[1:] + '.']
        if tool.extra:
            lines[-1] += (f' Needs `pip install "mmsaol[{tool.extra}]"`.')
        lines += ['', '```{eval-rst}',
                  f'.. autofunction:: {tool.module}.{tool.function}',
                  '```', '']
        build = getattr(module, 'build_parser', None)
        if build is not None:
            lines += [f'`{tool.module}.build_parser()` accepts:', '',
                      '```text',
                      parser_help(build(), f'mmsaol {tool.name}').rstrip(),
                      '```', '']
        parts.append('\n'.join(lines))
    return '\n'.join(parts)


GENERATORS: Dict[str, Callable[[str], str]] = {
    'troubleshooting': troubleshooting,
    'study-tables': study_tables,
    'recorded-localisation': recorded_localisation,
    'tools': tools,
}


def expand(text: str, where: str) -> str:
    """``text`` with every ``generated`` marker replaced by its Markdown."""
    placed = [m.group(2) for m in MARKER.finditer(text)
              if m.group(1) == 'study-tables']

    def replace(match: re.Match) -> str:
        what, arg = match.group(1), match.group(2) or ''
        if what == 'other-studies':
            return other_studies(placed)
        if what not in GENERATORS:
            raise ExtensionError(
                f'{where}: unknown generated block {what!r}; known: '
                f'{sorted(GENERATORS)}.')
        return GENERATORS[what](arg).rstrip('\n')
    return MARKER.sub(replace, text)


def source_read(app: Sphinx, docname: str, source: List[str]) -> None:
    source[0] = expand(source[0], app.env.doc2path(docname))


_MISSING = object()
#: Where else a short name in a docstring is looked up: mmsaol's public
#: packages (a docstring may name a component of a package it does not
#: import) and the upstream names docstrings write in types (``Tensor``,
#: ``DataSample``).
SHORT_NAME_SCOPES = (
    'mmsaol.', 'mmsaol.models.', 'mmsaol.evaluation.', 'mmsaol.engine.',
    'mmsaol.datasets.', 'mmsaol.visualization.', 'mmsaol.deploy.',
    'mmsaol.compat.', 'torch.', 'mmpretrain.structures.',
    'mmpretrain.models.', 'mmengine.hooks.', 'mmengine.runner.')


def lookup(path: str) -> Any:
    """The Python object at the dotted ``path`` (a module, then
    attributes), or ``_MISSING``."""
    parts = path.split('.')
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    if len(parts) == 1 and hasattr(builtins, path):
        return getattr(builtins, path)
    return _MISSING


def python_scopes(module: Optional[str], cls: Optional[str]) -> List[str]:
    """Where a short name in a docstring of ``module.cls`` is looked up:
    the class, the module, and the module the object is defined in."""
    scopes = ['']
    if module:
        scopes.insert(0, module + '.')
        if cls:
            scopes.insert(0, f'{module}.{cls}.')
            owner = lookup(f'{module}.{cls.split(".")[0]}')
            defined_in = getattr(owner, '__module__', None)
            if defined_in:
                scopes[2:2] = [f'{defined_in}.{cls}.', f'{defined_in}.']
    return scopes + list(SHORT_NAME_SCOPES)


def missing_reference(app: Sphinx, env: Any, node: nodes.Element,
                      contnode: nodes.Element) -> Optional[nodes.Element]:
    """Accept an undocumented reference to a name Python has."""
    if node.get('refdomain') != 'py':
        return None
    target = node['reftarget'].lstrip('.~')
    for scope in python_scopes(node.get('py:module'), node.get('py:class')):
        if lookup(scope + target) is not _MISSING:
            return contnode
    return None


def skip_module_data(app: Sphinx, what: str, name: str, obj: Any,
                     skip: bool, options: Any) -> Optional[bool]:
    """``automodule`` documents a module's classes and functions, not its
    constants (napoleon would read a ``#:`` comment's first words as a
    type)."""
    if what == 'module' and not (inspect.isclass(obj)
                                 or inspect.isroutine(obj)):
        return True
    return None


def setup(app: Sphinx) -> dict:
    app.connect('source-read', source_read)
    app.connect('autodoc-skip-member', skip_module_data)
    app.connect('missing-reference', missing_reference)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
