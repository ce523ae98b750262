"""Pictures of SAOL's maps: drawing functions, the ``SAOLMapsHook``
(registered in mmpretrain's HOOKS) and the writer behind
``tools/visualize_maps.py``."""
from .export import list_images, visualize_maps, write_map_pictures
from .maps import (
    contact_sheet,
    display_image,
    render_maps,
    sample_panels,
    save_png,
)
from .maps_hook import SAOLMapsHook

__all__ = [
    'SAOLMapsHook', 'contact_sheet', 'display_image', 'list_images',
    'render_maps', 'sample_panels', 'save_png', 'visualize_maps',
    'write_map_pictures'
]
