from .cub import CUBWithBoxes
from .digits_canvas import DigitsCanvas, render_canvas

__all__ = ['CUBWithBoxes', 'DigitsCanvas', 'render_canvas']
