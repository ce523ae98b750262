"""Install mmsaol, the SAOL plugin for mmpretrain 1.x.

``pip install -e .`` (development) or ``pip install .`` (configs and tools are
copied into ``mmsaol/.mim`` so an installed package finds its own configs).
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mmsaol', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def target_has_full_mmcv() -> bool:
    """Whether the interpreter we install into already has full ``mmcv``.

    pip builds in an isolated environment that hides the target's
    site-packages, so ask the target interpreter itself with a clean
    environment. A full ``mmcv`` must be kept: installing ``mmcv-lite`` over
    it would overwrite its Python files.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'PYTHONNOUSERSITE', 'PYTHONHOME')}
    code = ('import importlib.metadata as m, sys\n'
            'try:\n    m.distribution("mmcv")\nexcept Exception:\n'
            '    sys.exit(1)\n')
    try:
        return subprocess.run([sys.executable, '-c', code], env=env,
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class BuildWithConfigs(build_py):
    """Ship ``configs/`` and ``tools/`` inside the package, like mmpretrain."""

    def run(self) -> None:
        super().run()
        for name in ('configs', 'tools'):
            src = osp.join(HERE, name)
            dst = osp.join(self.build_lib, 'mmsaol', '.mim', name)
            if osp.isdir(src):
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    '__pycache__', '*.pyc'))


install_requires = [
    # torch/torchvision: a matching pair; see README "Stack notes".
    'torch>=2.1',
    'torchvision>=0.16',
    'mmengine==0.10.7',
    'mmpretrain==1.2.0',
    # mmengine 0.10.7 imports pkg_resources (removed in setuptools 82).
    'setuptools<81',
    'numpy',
    'scikit-learn',  # ships the 8x8 digits behind the demo data set
    'matplotlib',
    'scipy',
]
if not target_has_full_mmcv():
    install_requires.append('mmcv-lite>=2.0.0,<2.4.0')

setup(
    name='mmsaol',
    version=read_version(),
    description='Spatially Attentive Output Layer (SAOL, CVPR 2020) for '
    'mmpretrain',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.9',
    install_requires=install_requires,
    extras_require={'tests': ['pytest>=7', 'ruff']},
    cmdclass={'build_py': BuildWithConfigs},
    license='Apache-2.0',
    zip_safe=False,
)
