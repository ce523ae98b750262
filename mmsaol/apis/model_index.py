"""mmsaol's models in mmpretrain's model hub.

Importing mmsaol registers ``model-index.yml`` (mmpretrain's format, one
entry per shipped config, named after the config file) with
:class:`mmpretrain.apis.ModelHub`, so mmsaol's models are used by name as
mmpretrain's own are::

    import mmsaol
    from mmpretrain import get_model, inference_model, list_models

    list_models('*saol*')           # every SAOL config
    model = get_model('saol_demo',
                      pretrained='work_dirs/saol_demo/epoch_8.pth')
    inference_model(model, 'digit.png')

No trained weights are published yet, so ``pretrained=True`` finds none
(mmpretrain warns and keeps the random initialisation): pass a checkpoint.
"""
from __future__ import annotations

import os.path as osp
import warnings

from mmpretrain.apis import ModelHub

from mmsaol.compat.config import mim_root

_registered = False


def model_index_path() -> str:
    """``model-index.yml`` of this installation (see
    :func:`mmsaol.compat.config.mim_root`)."""
    return osp.join(mim_root(), 'model-index.yml')


def register_model_index() -> bool:
    """Register mmsaol's model index with mmpretrain's ``ModelHub``.

    Idempotent (``ModelHub`` refuses a name twice). Without an index (the
    package folder copied on its own) it warns and registers nothing.

    Returns:
        bool: whether this call registered the index.
    """
    global _registered
    if _registered:
        return False
    try:
        index = model_index_path()
    except FileNotFoundError as error:
        warnings.warn(f'{error} mmpretrain.get_model and list_models will '
                      "not know mmsaol's models by name.", stacklevel=2)
        return False
    ModelHub.register_model_index(index, config_prefix=osp.dirname(index))
    _registered = True
    return True
