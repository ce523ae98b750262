"""The package's layering, as docs/layout.md ("Package layout") draws it:
each part imports only from the parts below it, and only ``mmsaol.apis``
holds (and imports) the tools' logic."""
import ast
import glob
import os.path as osp
from typing import Dict, List, Set

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, 'mmsaol')

#: What each part imports from mmsaol, besides itself (exactly what
#: docs/layout.md ("Package layout") draws; a new import updates both).
#: ``version``, ``troubleshooting``, ``checks`` (argument checks) and
#: ``structures`` (the data SAOL's components hand each other) sit at the
#: very bottom.
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


def imported_names(path: str) -> List[List[str]]:
    """The dotted names a module imports (absolute or relative imports,
    also inside functions): for ``from m import a`` both ``m`` and
    ``m.a`` (``a`` may be a submodule)."""
    module = osp.relpath(path, REPO)[:-3].replace(osp.sep, '.').split('.')
    if module[-1] == '__init__':
        module = module[:-1]
    package = module if path.endswith('__init__.py') else module[:-1]
    names = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level \
                else []
            target = base + (node.module.split('.') if node.module else [])
            names += [target] + [target + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name.split('.') for a in node.names]
    return names


def imported_parts(path: str) -> Set[str]:
    """The top-level parts of mmsaol a module imports."""
    return {name[1] for name in imported_names(path)
            if name[0] == 'mmsaol' and len(name) > 1}


def module_closure(module: str) -> Set[str]:
    """The mmsaol modules that importing ``module`` can load: its imports,
    theirs, and every package ``__init__`` on the way (found statically,
    so an import inside a function counts too)."""
    seen: Set[str] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split('.')
        for end in range(1, len(parts) + 1):
            name = '.'.join(parts[:end])
            base = osp.join(REPO, *parts[:end])
            path = next((p for p in (base + '.py',
                                     osp.join(base, '__init__.py'))
                         if osp.exists(p)), None)
            if name in seen or path is None:
                continue
            seen.add(name)
            todo += ['.'.join(n) for n in imported_names(path)
                     if n and n[0] == 'mmsaol']
    return seen


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
    """``mmsaol train`` (and the error wrapper every tool shares) imports
    no module of ``mmsaol.deploy``: the deploy extra's error lives in
    ``mmsaol.checks``."""
    loaded = module_closure('mmsaol.apis.train')
    assert 'mmsaol.apis.cli' in loaded and 'mmsaol.checks' in loaded
    assert not [m for m in loaded if m.startswith('mmsaol.deploy')]
    # The walk does see deploy where a tool imports it.
    assert 'mmsaol.deploy.export' in module_closure('mmsaol.apis.benchmark')
