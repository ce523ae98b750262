from .distill_loss import SelfDistillLoss
from .geometry import box_to_cell_coverage, paste_maps
from .location_losses import (
           AttentionLoss,
           SpatialLogitsLoss,
           distribution_loss,
)

__all__ = ['AttentionLoss', 'SelfDistillLoss', 'SpatialLogitsLoss',
           'box_to_cell_coverage', 'distribution_loss', 'paste_maps']
