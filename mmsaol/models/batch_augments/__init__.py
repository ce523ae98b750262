from ...structures import MixGeometry
from .cutmix import GeometryCutMix
from .data_preprocessor import SAOLDataPreprocessor, geometry_augments
from .geometry import box_to_cell_coverage, paste_maps

__all__ = ['GeometryCutMix', 'MixGeometry', 'SAOLDataPreprocessor',
           'box_to_cell_coverage', 'geometry_augments', 'paste_maps']
