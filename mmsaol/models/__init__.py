"""SAOL's models: head, losses, CutMix geometry, classifier."""
from . import backbones  # noqa: F401  (registers PyramidNet)
from .batch_augments import *  # noqa: F403
from .batch_augments import __all__ as _augments
from .classifiers import *  # noqa: F403
from .classifiers import __all__ as _classifiers
from .heads import *  # noqa: F403
from .heads import __all__ as _heads
from .losses import *  # noqa: F403
from .losses import __all__ as _losses

__all__ = [*_augments, *_classifiers, *_heads, *_losses]
