"""The config helpers ``mmsaol.deploy`` imports from here, re-exported from
their homes: :func:`~mmsaol.compat.config.load_config`,
:func:`~mmsaol.compat.config.build_split` and
:func:`~mmsaol.model_configs.maps_config`. Remove this module once
``mmsaol.deploy`` imports them from there."""
from ..compat.config import build_split, load_config
from ..model_configs import maps_config

__all__ = ['build_split', 'load_config', 'maps_config']
