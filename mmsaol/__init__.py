"""mmsaol: the Spatially Attentive Output Layer (Kim, Baek, Kim, CVPR 2020)
for mmpretrain 1.x.

Importing this package registers every mmsaol component in mmpretrain's
registries (``custom_imports=dict(imports=['mmsaol'])`` in a config is
enough), installs the safe checkpoint loader, lets ``_base_`` name mmsaol's
configs as ``'mmsaol::<path>'`` and registers mmsaol's models with
mmpretrain's model hub (``mmpretrain.get_model('saol_demo')``).
"""
# First, before mmcv is imported: silences mmcv-lite's import warning.
from . import _quiet  # noqa: F401

# isort: split
from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registers components)
from .apis.model_index import register_model_index
from .compat import install_safe_checkpoint_loader
from .compat.config import install_config_scope
from .version import __version__

install_safe_checkpoint_loader()
install_config_scope()
register_model_index()

__all__ = ['__version__']
