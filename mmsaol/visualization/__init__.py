"""Pictures of SAOL's maps: drawing functions and the ``SAOLMapsHook``
(registered in mmpretrain's HOOKS); the grad-cam package's maps of any
stock classifier (``GradCAMClassifier``, registered in MODELS) and what
each map source costs (:mod:`.map_cost`). The tool behind
``tools/visualize_maps.py`` is :mod:`mmsaol.apis.visualize_maps`."""
from .gradcam import (
    GRADCAM_METHODS,
    GradCAMClassifier,
    auto_target_layer,
    gradcam_config,
    gradcam_maps,
)
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
    'GRADCAM_METHODS', 'GradCAMClassifier', 'SCALES', 'Panel',
    'SAOLMapsHook', 'auto_target_layer', 'contact_sheet', 'display_image',
    'gradcam_config', 'gradcam_maps', 'render_maps', 'sample_panels',
    'save_png'
]
