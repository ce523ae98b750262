from ...structures import MixGeometry
from .cutmix import GeometryCutMix
from .data_preprocessor import SAOLDataPreprocessor, geometry_augments

__all__ = ['GeometryCutMix', 'MixGeometry', 'SAOLDataPreprocessor',
           'geometry_augments']
