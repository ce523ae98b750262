from .distill_loss import SelfDistillLoss
from .location_losses import (
           AttentionLoss,
           SpatialLogitsLoss,
           distribution_loss,
)

__all__ = ['AttentionLoss', 'SelfDistillLoss', 'SpatialLogitsLoss',
           'distribution_loss']
