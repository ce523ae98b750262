"""Pictures of SAOL's maps: drawing functions and the ``SAOLMapsHook``
(registered in mmpretrain's HOOKS). The tool behind
``tools/visualize_maps.py`` is :mod:`mmsaol.apis.visualize_maps`."""
from .maps import (
    SCALES,
    Panel,
    contact_sheet,
    display_image,
    render_maps,
    sample_panels,
    save_png,
)
from .maps_hook import SAOLMapsHook

__all__ = [
    'SCALES', 'Panel', 'SAOLMapsHook', 'contact_sheet', 'display_image',
    'render_maps', 'sample_panels', 'save_png'
]
