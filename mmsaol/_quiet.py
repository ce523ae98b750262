"""Warnings that are not the user's business, silenced before mmsaol's
submodules import mmpretrain (and, through it, mmcv).

- mmcv-lite 2.2.0 warns on import (``mmcv/cnn/bricks/transformer.py``) that
  ``MultiScaleDeformableAttention``, a CUDA op of full mmcv, cannot be
  imported; neither mmsaol nor the mmpretrain models it builds use it. The
  filter matches that message from mmcv's modules only. Remove it when
  mmcv-lite stops warning.
- setuptools >= 80.9 warns that ``pkg_resources`` is deprecated whenever it
  is imported, which mmengine 0.10.7 does (``mmengine.utils.package_utils``)
  while a tool runs. Remove it when mmengine no longer imports
  ``pkg_resources``.
"""
import warnings

warnings.filterwarnings(
    'ignore', message='Fail to import ``MultiScaleDeformableAttention``',
    category=UserWarning, module='mmcv')
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated as an API',
    category=UserWarning)
