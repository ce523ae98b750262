"""The WSOL benchmark's metadata format (Choe et al., CVPR 2020): reader,
writer and the ``WSOLMetadataDataset`` (registered in mmpretrain's
DATASETS).

"Evaluating Weakly Supervised Object Localization Methods Right" (Choe et
al., CVPR 2020, `arXiv:2001.07437 <https://arxiv.org/abs/2001.07437>`_)
publishes its splits of CUB-200-2011, ImageNet (ILSVRC) and OpenImages30k
as one folder of headerless comma-separated files per split; an image id is
the image's path relative to the image root::

    <metadata root>/<split>/           split: train, val (train-fullsup), test
    ├── image_ids.txt      <image id>
    ├── class_labels.txt   <image id>,<class index from 0>
    ├── image_sizes.txt    <image id>,<width>,<height>   (may be empty)
    └── localization.txt   boxes: <image id>,<x0>,<y0>,<x1>,<y1>, one line
                           per box (CUB, ILSVRC); or masks: <image id>,
                           <mask file>,<ignore file>, one line per instance
                           mask, the ignore file on the image's first line
                           only (OpenImages)

Boxes are inclusive pixel coordinates of the original image (``x1 = x0 +
w`` for CUB's ``x, y, w`` boxes as the benchmark converts them), so ``0 <=
x0 <= x1 <= width - 1``. Mask files are paths relative to the mask root.
Files may lack a final newline.

:func:`read_wsol_metadata` is the one parser of this format (every other
part of the package, and any generator of data in it, goes through it or
through :func:`write_wsol_metadata`); malformed metadata raises
:class:`WSOLMetadataError`, one sentence naming the file and line.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

__all__ = ['WSOLMetadataDataset', 'WSOLMetadataError', 'WSOLRecord',
           'read_image_folder', 'read_localization', 'read_wsol_metadata',
           'write_wsol_metadata']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')
METADATA_FILES = ('image_ids.txt', 'class_labels.txt', 'image_sizes.txt',
                  'localization.txt')


class WSOLMetadataError(ValueError):
    """Malformed WSOL metadata (the message names the file and line)."""


@dataclass
class WSOLRecord:
    """One image of a WSOL split.

    Attributes:
        image_id (str): Path of the image relative to the image root.
        label (int): Class index, from 0.
        size (Tuple[int, int], optional): ``(width, height)`` of the image
            in pixels (None where ``image_sizes.txt`` has no line, as for
            OpenImages).
        boxes (List[Tuple[int, int, int, int]]): Boxes ``(x0, y0, x1, y1)``
            in inclusive pixel coordinates of the original image.
        masks (List[str]): Instance mask files, relative to the mask root.
        ignore (str, optional): Ignore-region mask file (with ``masks``).
    """

    image_id: str
    label: int
    size: Optional[Tuple[int, int]] = None
    boxes: List[Tuple[int, int, int, int]] = field(default_factory=list)
    masks: List[str] = field(default_factory=list)
    ignore: Optional[str] = None


def _rows(path: str) -> List[Tuple[int, List[str]]]:
    """``(line number, comma-separated fields)`` of a metadata file; blank
    lines (and a missing final newline) are fine."""
    with open(path, encoding='utf-8') as f:
        return [(number, line.rstrip('\r\n').split(','))
                for number, line in enumerate(f, start=1)
                if line.strip()]


def _fail(path: str, number: int, reason: str) -> WSOLMetadataError:
    return WSOLMetadataError(f'{path}, line {number}: {reason}.')


def _ints(path: str, number: int, values: Sequence[str],
          what: str) -> List[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise _fail(path, number, f'{what} must be integers, got '
                    f'{",".join(values)!r}') from None


def check_box(box: Sequence[int], size: Optional[Tuple[int, int]],
              where: str) -> None:
    """Raise unless ``box`` is ``(x0, y0, x1, y1)`` with ``0 <= x0 <= x1 <=
    width - 1`` and likewise for y (inclusive pixels inside the image).

    Args:
        box (Sequence[int]): The box.
        size (Tuple[int, int], optional): ``(width, height)``; None checks
            the order only.
        where (str): Prefix of the message (file and line).
    """
    x0, y0, x1, y1 = box
    if min(box) < 0 or x1 < x0 or y1 < y0:
        raise WSOLMetadataError(
            f'{where}: box {tuple(box)} is not (x0, y0, x1, y1) with 0 <= '
            'x0 <= x1 and 0 <= y0 <= y1; write the corners in this order.')
    if size is not None and (x1 > size[0] - 1 or y1 > size[1] - 1):
        raise WSOLMetadataError(
            f'{where}: box {tuple(box)} lies outside the {size[0]}x'
            f'{size[1]} image (inclusive pixel coordinates end at width - 1 '
            'and height - 1); fix the box or the image size.')


def _record(records: Dict[str, WSOLRecord], path: str, number: int,
            image_id: str) -> WSOLRecord:
    if image_id not in records:
        raise _fail(path, number, f'image id {image_id!r} is not among the '
                    'images of the split (image_ids.txt, or the image '
                    'folder); the files of a split must list the same images')
    return records[image_id]


def read_localization(path: str, records: Dict[str, WSOLRecord]) -> None:
    """Add the boxes or masks of a ``localization.txt`` to the records
    (nothing when the file does not exist).

    Args:
        path (str): The file.
        records (Dict[str, WSOLRecord]): The split's records by image id,
            changed in place (boxes are checked against their sizes).
    """
    if not osp.isfile(path):
        return
    kind = None
    for number, fields in _rows(path):
        this = {5: 'boxes', 3: 'masks'}.get(len(fields))
        if this is None or (kind is not None and this != kind):
            raise _fail(path, number, 'expected "<image id>,<x0>,<y0>,'
                        '<x1>,<y1>" (boxes) or "<image id>,<mask file>,'
                        '<ignore file>" (masks) on every line')
        kind = this
        item = _record(records, path, number, fields[0])
        if kind == 'boxes':
            box = tuple(_ints(path, number, fields[1:], 'box corners'))
            check_box(box, item.size, f'{path}, line {number}')
            item.boxes.append(box)
        elif item.masks:
            if fields[2]:
                raise _fail(path, number, 'only the first line of an image '
                            'names its ignore file; leave the third field '
                            'empty on later lines')
            item.masks.append(fields[1])
        else:
            item.masks.append(fields[1])
            item.ignore = fields[2] or None


def read_image_folder(root: str,
                      localization: Optional[str] = None
                      ) -> Tuple[List[str], List[WSOLRecord]]:
    """Records of an image folder, for data of one's own: one sub-folder
    per class (labels in the sorted order of the folder names), the images
    inside it (any depth); boxes or masks from a file in the format of
    ``localization.txt`` whose ids are paths relative to ``root``.

    Args:
        root (str): The folder of class folders.
        localization (str, optional): The boxes/masks file. Defaults to
            ``root/localization.txt`` when it exists.

    Returns:
        tuple[list[str], list[WSOLRecord]]: class names and records.
    """
    if not osp.isdir(root):
        raise WSOLMetadataError(f'{root} is not a folder of class folders; '
                                'give data_root (and metadata_root for the '
                                'WSOL metadata format).')
    classes = sorted(d for d in os.listdir(root)
                     if osp.isdir(osp.join(root, d)))
    records: Dict[str, WSOLRecord] = {}
    for label, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(osp.join(root, name))):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    image_id = osp.relpath(osp.join(folder, file), root)
                    records[image_id] = WSOLRecord(
                        image_id.replace(osp.sep, '/'), label)
    if not records:
        found = ', '.join(classes) or 'no sub-folder'
        raise WSOLMetadataError(
            f'{root} holds no image in class folders ({found}); put the '
            'images in one folder per class.')
    records = {r.image_id: r for r in records.values()}
    read_localization(localization or osp.join(root, 'localization.txt'),
                      records)
    return classes, list(records.values())


def read_wsol_metadata(folder: str) -> List[WSOLRecord]:
    """Read one split of the WSOL metadata format.

    Args:
        folder (str): The split's folder (``.../metadata/CUB/test``) with
            ``image_ids.txt``, ``class_labels.txt`` and optionally
            ``image_sizes.txt`` and ``localization.txt``.

    Returns:
        list[WSOLRecord]: one per line of ``image_ids.txt``, in its order.

    Raises:
        WSOLMetadataError: A file is missing, a line is malformed, an id is
            repeated or unknown to ``image_ids.txt``, an image has no label,
            a box lies outside its image, or box and mask lines are mixed.
    """
    def path_of(name):
        return osp.join(folder, name)

    for name in METADATA_FILES[:2]:
        if not osp.isfile(path_of(name)):
            raise WSOLMetadataError(
                f'{path_of(name)} does not exist: a WSOL metadata split '
                f'needs {", ".join(METADATA_FILES[:2])} (and optionally '
                f'{", ".join(METADATA_FILES[2:])}); check the metadata '
                'root and split.')
    records: Dict[str, WSOLRecord] = {}
    path = path_of('image_ids.txt')
    for number, fields in _rows(path):
        image_id = ','.join(fields).strip()
        if image_id in records:
            raise _fail(path, number, f'image id {image_id!r} is repeated')
        records[image_id] = WSOLRecord(image_id, -1)

    def record(path: str, number: int, image_id: str) -> WSOLRecord:
        return _record(records, path, number, image_id)

    path = path_of('class_labels.txt')
    for number, fields in _rows(path):
        if len(fields) != 2:
            raise _fail(path, number, 'expected "<image id>,<label>"')
        label, = _ints(path, number, fields[1:], 'the label')
        if label < 0:
            raise _fail(path, number, f'label {label} is negative (labels '
                        'count from 0)')
        record(path, number, fields[0]).label = label
    missing = [r.image_id for r in records.values() if r.label < 0]
    if missing:
        raise WSOLMetadataError(
            f'{path} has no label for image id {missing[0]!r} (listed in '
            f'{path_of("image_ids.txt")}); every image needs one.')

    path = path_of('image_sizes.txt')
    if osp.isfile(path):
        for number, fields in _rows(path):
            if len(fields) != 3:
                raise _fail(path, number,
                            'expected "<image id>,<width>,<height>"')
            width, height = _ints(path, number, fields[1:], 'the size')
            if width < 1 or height < 1:
                raise _fail(path, number, f'size {width}x{height} is empty')
            record(path, number, fields[0]).size = (width, height)

    read_localization(path_of('localization.txt'), records)
    return list(records.values())


def write_wsol_metadata(root: str, split: str,
                        records: Iterable[Union[WSOLRecord, dict]]) -> str:
    """Write one split in the WSOL metadata format (what
    :func:`read_wsol_metadata` reads).

    Args:
        root (str): The data set's metadata folder (e.g.
            ``metadata/CUB``); the split is written to ``root/split``.
        split (str): ``'train'``, ``'val'`` or ``'test'`` (any folder name).
        records (Iterable[WSOLRecord | dict]): The images, in order; a dict
            holds the fields of :class:`WSOLRecord`. Boxes are inclusive
            pixel coordinates inside ``size``; use either boxes or masks
            in one split.

    Returns:
        str: the split's folder.

    Raises:
        WSOLMetadataError: A record would be written that the reader
            rejects (repeated id, a box outside its image, mixed boxes and
            masks, a comma in an id or file name).
    """
    records = [r if isinstance(r, WSOLRecord) else WSOLRecord(**r)
               for r in records]
    folder = osp.join(root, split)
    seen = set()
    has_boxes = any(r.boxes for r in records)
    for r in records:
        where = f'record {r.image_id!r} for {folder}'
        names = [r.image_id, *r.masks, r.ignore or '']
        if any(',' in name for name in names):
            raise WSOLMetadataError(f'{where}: ids and file names cannot '
                                    'hold a comma (the files are CSV).')
        if r.image_id in seen:
            raise WSOLMetadataError(f'{where}: the image id is repeated.')
        seen.add(r.image_id)
        if has_boxes and r.masks:
            raise WSOLMetadataError(f'{where}: one split holds boxes or '
                                    'masks, not both.')
        for box in r.boxes:
            check_box(tuple(int(v) for v in box), r.size, where)
    os.makedirs(folder, exist_ok=True)
    lines: Dict[str, List[str]] = {name: [] for name in METADATA_FILES}
    for r in records:
        lines['image_ids.txt'].append(r.image_id)
        lines['class_labels.txt'].append(f'{r.image_id},{int(r.label)}')
        if r.size is not None:
            lines['image_sizes.txt'].append(
                f'{r.image_id},{int(r.size[0])},{int(r.size[1])}')
        for box in r.boxes:
            lines['localization.txt'].append(
                ','.join([r.image_id, *(str(int(v)) for v in box)]))
        for i, mask in enumerate(r.masks):
            ignore = (r.ignore or '') if i == 0 else ''
            lines['localization.txt'].append(f'{r.image_id},{mask},{ignore}')
    for name, content in lines.items():
        with open(osp.join(folder, name), 'w', encoding='utf-8') as f:
            f.write(''.join(line + '\n' for line in content))
    return folder


@DATASETS.register_module()
class WSOLMetadataDataset(BaseDataset):
    """A split of the WSOL benchmark in its metadata format (Choe et al.,
    CVPR 2020): CUB-200-2011, ImageNet (ILSVRC) or OpenImages30k, or any
    data written by :func:`write_wsol_metadata`.

    Every sample has ``img_path``, ``gt_label`` and, for localisation,
    ``gt_bbox`` (``(M, 4)`` float32 inclusive-pixel boxes ``x0, y0, x1,
    y1`` of the original image; ``(0, 4)`` without boxes) or
    ``gt_mask_paths`` (the instance mask files) and ``gt_ignore_path``
    (the ignore mask file or None), plus ``image_id``. ``WSOLMetric`` reads
    them from the metainfo: pack them with ``PackInputs(meta_keys=(...,
    'gt_bbox', 'gt_mask_paths', 'gt_ignore_path'))``. The files are checked
    when the data set is built (see :func:`read_wsol_metadata`; with
    ``check_files`` also that every image and mask file exists).

    Data of one's own without metadata files: leave ``metadata_root`` out
    and give an image folder with one sub-folder per class
    (:func:`read_image_folder`), boxes or masks in a ``localization.txt``
    of the same format next to the class folders (or ``localization``).

    Args:
        data_root (str): Image root: image ids are relative to it.
        metadata_root (str, optional): The split's metadata folder, e.g.
            ``metadata/CUB/test``; relative paths are taken from the
            current folder. None: ``data_root`` is an image folder.
        mask_root (str, optional): Root of the mask files. Defaults to
            ``data_root``.
        check_files (bool): Check that every image (and mask) file exists.
            Defaults to True.
        localization (str, optional): With an image folder, the boxes or
            masks file (default ``data_root/localization.txt`` if any).
        classes (Sequence[str], optional): Class names (else the class
            folders' names, or the labels' indices with ``num_classes`` =
            largest label + 1).
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``
            (``pipeline``, ``test_mode``, ``indices``...).
    """

    def __init__(self,
                 data_root: str,
                 metadata_root: Optional[str] = None,
                 mask_root: Optional[str] = None,
                 check_files: bool = True,
                 localization: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None,
                 **kwargs) -> None:
        self.metadata_root = metadata_root
        self.mask_root = data_root if mask_root is None else mask_root
        self.check_files = check_files
        if metadata_root is None:
            folders, self._records = read_image_folder(data_root,
                                                       localization)
            classes = folders if classes is None else classes
        else:
            self._records = read_wsol_metadata(metadata_root)
        if classes is None:
            count = max((r.label for r in self._records), default=-1) + 1
            classes = [str(i) for i in range(count)]
        super().__init__(ann_file='', data_root=data_root,
                         classes=tuple(classes), **kwargs)

    def _line_of(self, name: str, image_id: str) -> int:
        if self.metadata_root is None:
            return 0
        path = osp.join(self.metadata_root, name)
        for number, fields in _rows(path):
            if fields[0] == image_id:
                return number
        return 0

    def load_data_list(self) -> List[dict]:
        """One sample per record of the split, files checked."""
        data_list = []
        for r in self._records:
            img_path = osp.join(self.data_root, r.image_id)
            if self.check_files and not osp.isfile(img_path):
                number = self._line_of('image_ids.txt', r.image_id)
                raise WSOLMetadataError(
                    f'{osp.join(self.metadata_root, "image_ids.txt")}, line '
                    f'{number}: image {img_path!r} does not exist; check '
                    'data_root (image ids are relative to it).')
            masks = [osp.join(self.mask_root, m) for m in r.masks]
            ignore = None if r.ignore is None else osp.join(self.mask_root,
                                                            r.ignore)
            if self.check_files:
                for name in [*r.masks, r.ignore]:
                    full = name and osp.join(self.mask_root, name)
                    if full and not osp.isfile(full):
                        number = self._line_of('localization.txt',
                                               r.image_id)
                        raise WSOLMetadataError(
                            f'{osp.join(self.metadata_root, "localization.txt")}'  # noqa: E501
                            f', line {number} or later: mask file {full!r} '
                            'does not exist; check mask_root (mask files '
                            'are relative to it).')
            info = dict(img_path=img_path, gt_label=int(r.label),
                        image_id=r.image_id)
            if r.masks:
                info['gt_mask_paths'] = masks
                info['gt_ignore_path'] = ignore
            else:
                info['gt_bbox'] = np.array(r.boxes, dtype=np.float32
                                           ).reshape(-1, 4)
            data_list.append(info)
        return data_list
