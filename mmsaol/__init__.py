"""mmsaol: the Spatially Attentive Output Layer (Kim, Baek, Kim, CVPR 2020)
for mmpretrain 1.x.

Importing this package registers every mmsaol component in mmpretrain's
registries (``custom_imports=dict(imports=['mmsaol'])`` in a config is
enough) and installs the safe checkpoint loader.
"""
# First, before mmcv is imported: silences mmcv-lite's import warning.
from . import _quiet  # noqa: F401

# isort: split
from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registers components)
from .compat import install_safe_checkpoint_loader
from .version import __version__

install_safe_checkpoint_loader()

__all__ = ['__version__']
