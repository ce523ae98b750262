from .cub import CUBWithBoxes
from .digits_canvas import DigitsCanvas, render_canvas
from .image_files import (
                          CheckedCustomDataset,
                          CheckedLoadImageFromFile,
                          UnreadableImageError,
)
from .wsol_metadata import (
    WSOLMetadataDataset,
    WSOLMetadataError,
    WSOLRecord,
    read_wsol_metadata,
    write_wsol_metadata,
)

__all__ = ['CUBWithBoxes', 'CheckedCustomDataset', 'CheckedLoadImageFromFile',
           'DigitsCanvas', 'UnreadableImageError', 'WSOLMetadataDataset',
           'WSOLMetadataError', 'WSOLRecord', 'read_wsol_metadata',
           'render_canvas', 'write_wsol_metadata']
