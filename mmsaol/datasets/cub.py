"""CUB-200-2011 with its bird bounding boxes, for localisation."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
from mmengine import list_from_file
from mmengine.fileio import get_file_backend
from mmpretrain.datasets import CUB
from mmpretrain.registry import DATASETS

from ..checks import check_choice

CUB_SPLITS = ('train', 'test')


@DATASETS.register_module()
class CUBWithBoxes(CUB):
    """CUB-200-2011 (Wah et al., 2011) with a bounding box per image.

    mmpretrain's ``CUB`` with, for every sample, the bird's box from
    ``bounding_boxes.txt`` as ``gt_bbox`` (``(4,)`` float32, ``x0, y0, x1,
    y1`` in pixels of the original image: the file's ``x, y, width,
    height`` become ``x, y, x + width, y + height``, the conversion of the
    WSOL benchmark's CUB metadata, whose protocol then reads the corners as
    inclusive pixels). Weakly-supervised localisation (SAOL paper, Sec. 4)
    scores maps against these boxes; pack them with
    ``PackInputs(meta_keys=(..., 'gt_bbox'))``. This reads CUB's own files
    and its official train/test split; the benchmark's splits (with the
    train-fullsup ``val``) come as metadata: ``WSOLMetadataDataset``.
    Class names come from ``classes.txt`` (without the ``001.`` prefix)
    unless ``metainfo`` gives them. The standard layout::

        CUB_200_2011/
        ├── images/<class folder>/<image>.jpg
        ├── images.txt               <image id> <path under images/>
        ├── image_class_labels.txt   <image id> <class id, from 1>
        ├── train_test_split.txt     <image id> <1: train, 0: test>
        ├── bounding_boxes.txt       <image id> <x> <y> <width> <height>
        └── classes.txt              <class id> <NNN.Class_name>

    Args:
        data_root (str): The ``CUB_200_2011`` folder.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        test_mode (bool): Passed to ``BaseDataset``. Defaults to False.
        metainfo (dict, optional): Overrides the class names.
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``
            (``pipeline``, ``indices``...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 test_mode: bool = False,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        check_choice(split, CUB_SPLITS, 'CUBWithBoxes.split')
        backend = get_file_backend(data_root, enable_singleton=True)
        self.bbox_file = backend.join_path(data_root, 'bounding_boxes.txt')
        classes_file = backend.join_path(data_root, 'classes.txt')
        if metainfo is None and backend.exists(classes_file):
            metainfo = dict(classes=self._read_classes(classes_file))
        super().__init__(data_root=data_root, split=split,
                         test_mode=test_mode, metainfo=metainfo, **kwargs)

    @staticmethod
    def _read_classes(path: str) -> tuple:
        """Names of ``classes.txt`` in class-id order, ``NNN.`` dropped."""
        rows = [line.split(maxsplit=1) for line in list_from_file(path)
                if line.strip()]
        rows.sort(key=lambda row: int(row[0]))
        return tuple(name.split('.', 1)[-1] for _, name in rows)

    def _read_boxes(self) -> Dict[int, np.ndarray]:
        """``bounding_boxes.txt`` as ``{image id (from 0): x1, y1, x2, y2}``.
        """
        boxes = {}
        for line in list_from_file(self.bbox_file):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 5:
                raise ValueError(
                    f'{self.bbox_file}: expected "<image id> <x> <y> <width> '
                    f'<height>", got {line!r}.')
            x, y, w, h = (float(v) for v in fields[1:])
            boxes[int(fields[0]) - 1] = np.array([x, y, x + w, y + h],
                                                 dtype=np.float32)
        return boxes

    def load_data_list(self) -> List[dict]:
        """mmpretrain's CUB samples, each with its ``gt_bbox``."""
        data_list = super().load_data_list()
        image_ids = {
            self.backend.join_path(self.img_prefix, path): image_id
            for image_id, path in self._load_data_from_txt(
                self.ann_file).items()
        }
        boxes = self._read_boxes()
        for info in data_list:
            image_id = image_ids[info['img_path']]
            if image_id not in boxes:
                raise ValueError(f'{self.bbox_file} has no box for image id '
                                 f'{image_id + 1} ({info["img_path"]}).')
            info['gt_bbox'] = boxes[image_id]
        return data_list
