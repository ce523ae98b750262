"""Config files: the one module where a config is found, read and walked,
and ``_base_ = ['mmsaol::...']``.

- :func:`resolve_config`: a path as given, else the same path inside the
  installed package's configs (what every tool does with its CONFIG).
- :func:`load_config`: read it (or copy a ``Config``) and merge
  ``--cfg-options``; :func:`build_split`: the data set of one of its data
  loaders.
- :func:`walk_config`: every node of a config tree with its dotted path;
  :func:`replace_types`: swap component types in place (SyncBN on a CPU
  host, mmsaol's types in an exported stock config, CutMix for SAOL).
- :func:`install_config_scope`: mmsaol's configs as bases of other configs.

``mmsaol::`` bases are for mmengine 0.10.7 (the last release).
``Config._get_cfg_path`` resolves ``'<package>::<path>'`` only for the
packages of its fixed table
``mmengine.config.utils.MODULE2PACKAGE`` (mmpretrain, mmdet, ...) and
refuses any other. Adding ``mmsaol`` to that table is not enough: mmengine
then looks for ``mmsaol/.mim`` next to the distribution's metadata, which an
editable install does not have; it scopes the base's components to a
registry scope ``'mmsaol'`` that does not exist (mmsaol registers into
mmpretrain's registries), so every build warns and falls back; and its
pattern refuses a top-level file such as ``'mmsaol::saol_demo.py'``.
:func:`install_config_scope` therefore wraps ``Config._get_cfg_path``: a
``'mmsaol::<path>'`` base is read from mmsaol's configs (``<path>``
relative to the ``configs/`` folder, as for ``mmpretrain::``) in mmpretrain's
scope, and every other path goes to mmengine unchanged. It can go when
mmengine lets a package declare where its configs are.

The wrapper exists in processes that import mmsaol before they parse the
config (mmsaol's tools, ``mmsaol <tool>``, ``mim train|test|run mmsaol``,
Python code that imports mmsaol). ``custom_imports`` is applied only after
the config is parsed, so stock tools that do not import mmsaol need the
file path of the base instead.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import (
    Any,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from mmengine.config import Config
from mmengine.registry import DefaultScope

from ..checks import check_choice

#: The ``mmsaol`` package folder.
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: Prefix of a base config path read from mmsaol's configs.
PREFIX = 'mmsaol::'
#: Registry scope of mmsaol's components (they register into mmpretrain's).
SCOPE = 'mmpretrain'


def mim_root() -> str:
    """The folder holding mmsaol's ``configs/``, ``tools/`` and
    ``model-index.yml``.

    ``mmsaol/.mim`` in an installed package (the build copies them there,
    like mmpretrain's), the repository root in a source checkout (an
    editable install).

    Raises:
        FileNotFoundError: neither holds ``model-index.yml``.
    """
    installed = osp.join(PACKAGE_DIR, '.mim')
    checkout = osp.dirname(PACKAGE_DIR)
    for root in (installed, checkout):
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(
        f'mmsaol has no model-index.yml in {installed} or {checkout}: '
        'install mmsaol with pip (pip install . or pip install -e .) from a '
        'complete checkout.')


def mmsaol_config_path(path: str) -> str:
    """The file of ``'mmsaol::<path>'``: ``<path>`` inside mmsaol's
    ``configs/`` folder.

    Raises:
        FileNotFoundError: no such config (named with the fix).
    """
    relative = path[len(PREFIX):] if path.startswith(PREFIX) else path
    configs = osp.join(mim_root(), 'configs')
    candidate = osp.normpath(osp.join(configs, relative))
    inside = candidate.startswith(osp.join(configs, ''))
    if not inside or not osp.isfile(candidate):
        raise FileNotFoundError(
            f'Base config {path!r} is not a file of mmsaol\'s configs folder '
            f'({configs}): write the path relative to it, e.g. '
            "'mmsaol::saol_demo.py' or "
            "'mmsaol::_base_/datasets/digits_canvas.py'.")
    return candidate


def install_config_scope() -> None:
    """Let ``_base_`` name mmsaol's configs as ``'mmsaol::<path>'``
    (mmengine 0.10.7, see the module docstring). Idempotent."""
    upstream = Config._get_cfg_path
    if getattr(upstream, 'mmsaol_wrapper', False):
        return

    def _get_cfg_path(cfg_path: str,
                      filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return mmsaol_config_path(cfg_path), SCOPE
        return upstream(cfg_path, filename)

    _get_cfg_path.mmsaol_wrapper = True
    _get_cfg_path.upstream = upstream
    _get_cfg_path.__doc__ = upstream.__doc__
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def resolve_config(path: str) -> str:
    """A config path as given, or else the same path inside mmsaol's
    configs (``pip install .`` ships ``configs/`` as ``mmsaol/.mim/configs``;
    a source checkout has it next to the package).

    Raises:
        FileNotFoundError: neither is a file (named with the fix).
    """
    if osp.isfile(path):
        return path
    relative = path.split('configs/', 1)[-1]
    for root in (osp.join(PACKAGE_DIR, '.mim', 'configs'),
                 osp.join(osp.dirname(PACKAGE_DIR), 'configs')):
        candidate = osp.join(root, relative)
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'Config {path!r} not found (also looked in the installed mmsaol '
        "configs). Give a path such as configs/saol_demo.py.")


def load_config(config: Union[str, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """A config from a file (found by :func:`resolve_config`), or a copy of
    a ``Config``, with ``cfg_options`` (``--cfg-options`` style
    ``{'a.b': value}``) merged in."""
    cfg = copy.deepcopy(config) if isinstance(config, Config) \
        else Config.fromfile(resolve_config(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


#: Data loaders of a config whose data set :func:`build_split` builds.
SPLITS = ('train', 'val', 'test')
#: Their config fields.
DATALOADERS = tuple(f'{split}_dataloader' for split in SPLITS)


def build_split(cfg: Config, split: str, num: Optional[int] = None):
    """The data set of ``cfg.<split>_dataloader``, its first ``num`` items
    when given.

    Raises:
        ValueError: an unknown split, or a config without that loader.
    """
    from mmpretrain.registry import DATASETS
    check_choice(split, SPLITS, 'split')
    key = f'{split}_dataloader'
    if not cfg.get(key):
        raise ValueError(f'The config has no {key} to take images from.')
    dataset_cfg = copy.deepcopy(cfg[key].dataset)
    if num is not None:
        dataset_cfg.indices = int(num)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dataset_cfg)


def walk_config(node: Any, path: str = '') -> Iterator[Tuple[str, Any]]:
    """``(dotted path, value)`` of every node of a config tree: the node
    itself, then, depth first, the items of its dicts and the elements of
    its lists and tuples (indices as path parts, e.g.
    ``'model.train_cfg.augments.0'``).

    A dict may be changed in place by the caller when it is yielded: its
    items are read only afterwards, so the walk goes on below the changed
    dict.
    """
    yield path, node
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return
    for key, value in list(items):
        yield from walk_config(value, f'{path}.{key}' if path else str(key))


#: ``{type: (new type, arguments only the old type accepts)}``.
TypeTable = Mapping[str, Tuple[str, Sequence[str]]]


def replace_types(node: Any, table: TypeTable) -> List[str]:
    """Give every component config under ``node`` (a dict whose ``type`` is
    a key of ``table``) its new type, dropping the arguments the new type
    does not accept; in place.

    Returns:
        List[str]: the dotted paths of the components changed.
    """
    changed = []
    for path, value in walk_config(node):
        if isinstance(value, dict) and isinstance(value.get('type'), str) \
                and value['type'] in table:
            value['type'], dropped = table[value['type']]
            for arg in dropped:
                value.pop(arg, None)
            changed.append(path)
    return changed
