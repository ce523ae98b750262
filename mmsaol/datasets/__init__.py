from .digits_canvas import DigitsCanvas, render_canvas

__all__ = ['DigitsCanvas', 'render_canvas']
