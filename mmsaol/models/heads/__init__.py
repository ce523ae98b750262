from ...structures import SAOLOutputs
from .cam_head import CAMHead, class_activation_maps
from .functional import class_maps, resize_to_grid, saol_log_output
from .saol_head import SAOLHead
from .two_gapfc_head import TwoGAPFCHead

__all__ = ['CAMHead', 'SAOLHead', 'SAOLOutputs', 'TwoGAPFCHead',
           'class_activation_maps', 'class_maps', 'resize_to_grid',
           'saol_log_output']
