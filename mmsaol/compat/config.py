"""``_base_ = ['mmsaol::...']``: mmsaol's configs as bases of other configs.

For mmengine 0.10.7 (the last release). ``Config._get_cfg_path`` resolves
``'<package>::<path>'`` only for the packages of its fixed table
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

import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config

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
