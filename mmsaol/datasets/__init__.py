from .cub import CUBWithBoxes
from .digits_canvas import DigitsCanvas, render_canvas
from .image_files import (
                          CheckedCustomDataset,
                          CheckedLoadImageFromFile,
                          UnreadableImageError,
)

__all__ = ['CUBWithBoxes', 'CheckedCustomDataset', 'CheckedLoadImageFromFile',
           'DigitsCanvas', 'UnreadableImageError', 'render_canvas']
