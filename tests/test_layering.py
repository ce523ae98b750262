"""The package's layering, as README "Package layout" draws it: each part
imports only from the parts below it, and only ``mmsaol.apis`` holds (and
imports) the tools' logic."""
import ast
import glob
import os.path as osp
import subprocess
import sys
from typing import Dict, Set

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, 'mmsaol')

#: What each part imports from mmsaol, besides itself (exactly what the
#: README's "Package layout" draws; a new import updates both). ``version``,
#: ``troubleshooting``, ``checks`` (argument checks) and ``structures`` (the
#: data SAOL's components hand each other) sit at the very bottom.
ALLOWED: Dict[str, Set[str]] = {
    'compat': set(),
    'models': set(),
    'datasets': set(),
    'engine': {'compat'},
    'model_configs': {'compat', 'models'},
    'evaluation': set(),
    'visualization': {'evaluation'},
    'deploy': {'compat', 'models', 'model_configs'},
    'apis': {'compat', 'model_configs', 'engine', 'visualization',
             'deploy', 'datasets'},
}
BOTTOM = {'version', 'troubleshooting', '_quiet', 'structures',
          'checks'}


def part_of(path: str) -> str:
    return osp.relpath(path, PACKAGE).split(osp.sep)[0].replace('.py', '')


def imported_parts(path: str) -> Set[str]:
    """The top-level parts of mmsaol a module imports (absolute or
    relative imports, also inside functions)."""
    module = osp.relpath(path, REPO)[:-3].replace(osp.sep, '.').split('.')
    if module[-1] == '__init__':
        module = module[:-1]
    package = module if path.endswith('__init__.py') else module[:-1]
    parts = set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split('.') if node.module
                                 else [])
                names = [target] if node.module else \
                    [base + [a.name] for a in node.names]
            elif node.module:
                names = [node.module.split('.') + [a.name]
                         for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split('.') for a in node.names]
        for name in names:
            if name[0] == 'mmsaol' and len(name) > 1:
                parts.add(name[1])
    return parts


def test_each_part_imports_only_the_parts_below_it():
    wrong = []
    for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True):
        part = part_of(path)
        if part not in ALLOWED:
            continue
        extra = imported_parts(path) - ALLOWED[part] - BOTTOM - {part}
        if extra:
            wrong.append(f'{osp.relpath(path, REPO)} imports {sorted(extra)}')
    assert not wrong, wrong


def test_only_apis_and_the_entry_points_import_apis():
    importers = []
    for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True):
        # The package's __init__ registers the model index (apis) on import.
        if part_of(path) in ('apis', '__main__', '__init__'):
            continue
        if 'apis' in imported_parts(path):
            importers.append(osp.relpath(path, REPO))
    assert not importers
    for path in glob.glob(osp.join(REPO, 'tools', '*.py')):
        assert imported_parts(path) <= {'apis'} | BOTTOM, path


def test_the_parser_sees_relative_imports():
    path = osp.join(PACKAGE, 'engine', 'hooks', 'checkpoint_match_hook.py')
    assert 'compat' in imported_parts(path) or \
        'compat' in imported_parts(osp.join(PACKAGE, 'engine',
                                            '__init__.py'))


def test_train_tool_loads_nothing_of_deploy():
    """``mmsaol train`` (and the error wrapper every tool shares) loads no
    module of ``mmsaol.deploy``: the deploy extra's error lives in
    ``mmsaol.checks``."""
    code = ('import sys, mmsaol.apis.train; print(sorted(m for m in '
            "sys.modules if m.startswith('mmsaol.deploy')))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    assert out.strip() == '[]'
