"""Image-folder data with errors and warnings that name the file or folder.

Importing this module replaces two entries of mmpretrain 1.2.0's registries
(``force=True``), so stock configs get them after ``import mmsaol``:

- ``LoadImageFromFile`` (mmcv 2.2.0's transform, which mmpretrain
  registers): an image that cannot be decoded raises
  :class:`UnreadableImageError`, one sentence naming the file and the fix.
  Upstream lets OpenCV's ``cv2.error`` through without the file name for
  an empty file (``!buf.empty() in function 'imdecode_'``) or a header
  claiming more than OpenCV's 2^30-pixel limit (``validateInputImageSize``),
  and asserts ``failed to load image`` for other undecodable bytes.
- ``CustomDataset``: a class folder without images, which upstream keeps
  as a class (its index counts towards ``num_classes``) with a warning that
  gives only the folder's name, is also warned about with its path and the
  fix.

Both are subclasses; everything else is upstream's. The overrides can go
when mmcv names the file in its decoding errors and mmpretrain says what an
empty class folder does.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

import mmcv.transforms
import mmpretrain.datasets  # noqa: F401  (registers upstream's entries first)
from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS, TRANSFORMS

__all__ = ['CheckedCustomDataset', 'CheckedLoadImageFromFile',
           'UnreadableImageError']


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip()]
    text = lines[0] if lines else ''
    return f'{type(error).__name__}: {text[:160]}' if text else \
        type(error).__name__


def unreadable_image_message(path: str,
                             error: Optional[BaseException]) -> str:
    """The sentence for an image that cannot be decoded.

    Args:
        path (str): The image file.
        error (BaseException, optional): What the decoder raised (None:
            it returned no image).

    Returns:
        str: Names the file, the reason and the fix.
    """
    text = '' if error is None else str(error)
    if '!buf.empty()' in text:
        return (f'Cannot read image {path!r}: the file is empty (0 bytes); '
                'replace it (an incomplete copy or download?) or delete it '
                'from the data set.')
    if 'validateInputImageSize' in text:
        return (f'Cannot read image {path!r}: its header claims more than '
                "the 2^30 pixels OpenCV decodes (a damaged or crafted "
                'header, or a huge image); replace or shrink it, or raise '
                'the limit with the environment variable '
                'OPENCV_IO_MAX_IMAGE_PIXELS if the image is genuine.')
    if type(error).__name__ == 'DecompressionBombError':
        return (f'Cannot read image {path!r}: its header claims more pixels '
                'than Pillow decodes (a damaged or crafted header, or a '
                f'huge image: {text}); replace or shrink it, or raise '
                'PIL.Image.MAX_IMAGE_PIXELS if the image is genuine.')
    reason = 'the decoder returned nothing' if error is None else \
        _first_line(error)
    return (f'Cannot read image {path!r}: it cannot be decoded as an image '
            f'({reason}); replace it or delete it from the data set.')


@TRANSFORMS.register_module(name='LoadImageFromFile', force=True)
class CheckedLoadImageFromFile(mmcv.transforms.LoadImageFromFile):
    """mmcv's ``LoadImageFromFile``; undecodable images name the file.

    Registered as ``LoadImageFromFile`` in mmpretrain's registry, so stock
    pipelines use it. Arguments and results are upstream's; with
    ``ignore_empty=True`` an unreadable image still gives None, as
    upstream. Errors reading the file (``FileNotFoundError``, ...) are
    upstream's.

    Raises:
        UnreadableImageError: The file is empty, its header claims more
            pixels than the decoder accepts, or it is not an image.
    """

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image of ``results['img_path']`` (see upstream)."""
        path = str(results['img_path'])
        try:
            return super().transform(results)
        except OSError as error:
            # Reading the file (missing, no permission, ...) sets errno;
            # PIL's decoding errors are OSErrors without one.
            if error.errno is not None:
                raise
            raise UnreadableImageError(
                unreadable_image_message(path, error)) from error
        except AssertionError as error:
            if 'failed to load image' not in str(error):
                raise
            raise UnreadableImageError(
                unreadable_image_message(path, None)) from None
        except Exception as error:
            raise UnreadableImageError(
                unreadable_image_message(path, error)) from error


@DATASETS.register_module(name='CustomDataset', force=True)
class CheckedCustomDataset(CustomDataset):
    """mmpretrain's ``CustomDataset``; empty class folders are named.

    Registered as ``CustomDataset`` in mmpretrain's registry. Arguments and
    data are upstream's: a sub-folder without an image is still a class (its
    label index exists, no sample has it). On top of upstream's warning,
    which gives the folder's name only, one warning gives its path, the
    class index and the fix.
    """

    def _find_samples(self) -> list:
        samples = super()._find_samples()
        folder_to_idx = getattr(self, 'folder_to_idx', None)
        if not self.with_label or not folder_to_idx:
            return samples
        used = {label for _, label in samples}
        for folder, label in sorted(folder_to_idx.items(),
                                    key=lambda item: item[1]):
            if label not in used:
                MMLogger.get_current_instance().warning(
                    f'Class folder {osp.join(self.img_prefix, folder)!r} '
                    f'holds no image file ({", ".join(self.extensions)}), '
                    f'but it still counts as class {label} '
                    f'({folder!r}) of {len(folder_to_idx)}: delete the '
                    'folder, or add its images.')
        return samples
