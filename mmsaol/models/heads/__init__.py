from .functional import class_maps, resize_to_grid, saol_log_output
from .saol_head import SAOLHead, SAOLOutputs

__all__ = ['SAOLHead', 'SAOLOutputs', 'class_maps', 'resize_to_grid',
           'saol_log_output']
