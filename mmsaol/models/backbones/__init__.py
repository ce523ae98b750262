"""Backbones that mmpretrain does not ship: PyramidNet with ShakeDrop."""
from .pyramidnet import PyramidNet
from .shakedrop import ShakeDrop, shake_drop

__all__ = ['PyramidNet', 'ShakeDrop', 'shake_drop']
