"""Build step of mmsaol that pyproject.toml cannot express.

Every piece of metadata (name, version, requirements, extras, entry points)
is static in ``pyproject.toml``: a wheel says the same whatever the machine
that builds it has installed. This file only adds the step that ships
``configs/``, ``tools/`` and the model index inside the package as
``mmsaol/.mim``, as mmpretrain does, so an installed mmsaol finds its own
configs (``mim``, ``mmpretrain.get_model('saol_demo')``,
``_base_ = ['mmsaol::...']``). An editable install reads them from the
source tree instead (:func:`mmsaol.compat.config.mim_root`).
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: Folders and files of the repository shipped under ``mmsaol/.mim``.
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')


class BuildWithMimContent(build_py):
    """``build_py`` that also copies :data:`MIM_CONTENT` into
    ``mmsaol/.mim`` of the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # the package is the source tree: nothing to copy
        mim = osp.join(self.build_lib, 'mmsaol', '.mim')
        os.makedirs(mim, exist_ok=True)
        for name in MIM_CONTENT:
            src, dst = osp.join(HERE, name), osp.join(mim, name)
            if osp.isdir(src):
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    '__pycache__', '*.pyc'))
            elif osp.isfile(src):
                shutil.copyfile(src, dst)
            else:
                raise FileNotFoundError(
                    f'{src} is missing: build mmsaol from a complete '
                    'checkout or sdist.')


setup(cmdclass={'build_py': BuildWithMimContent})
