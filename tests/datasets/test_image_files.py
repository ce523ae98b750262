"""mmsaol's LoadImageFromFile and CustomDataset in mmpretrain's registry:
upstream's behaviour, with unreadable images and empty class folders named
(the messages themselves are checked in tests/test_bad_inputs.py)."""
from pathlib import Path

import mmcv.transforms
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS, TRANSFORMS
from PIL import Image

from mmsaol.datasets import (
    CheckedCustomDataset,
    CheckedLoadImageFromFile,
    UnreadableImageError,
)


def _png(path: Path) -> Path:
    pixels = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    Image.fromarray(pixels).save(path)
    return path


def test_stock_config_pipeline_uses_them(repo_root: str) -> None:
    """A stock mmpretrain config (default scope mmpretrain) builds mmsaol's
    subclasses under upstream's names."""
    import mmpretrain
    cfg = Config.fromfile(
        Path(mmpretrain.__file__).parent / '.mim' / 'configs' / '_base_' /
        'datasets' / 'imagenet_bs32.py')
    init_default_scope('mmpretrain')
    load = TRANSFORMS.build(cfg.train_pipeline[0])
    assert cfg.train_pipeline[0]['type'] == 'LoadImageFromFile'
    assert type(load) is CheckedLoadImageFromFile
    assert isinstance(load, mmcv.transforms.LoadImageFromFile)
    assert DATASETS.get('CustomDataset') is CheckedCustomDataset
    assert issubclass(CheckedCustomDataset, CustomDataset)


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_images_load_as_upstream(tmp_path: Path, backend: str) -> None:
    path = _png(tmp_path / 'a.png')
    ours = CheckedLoadImageFromFile(imdecode_backend=backend)
    stock = mmcv.transforms.LoadImageFromFile(imdecode_backend=backend)
    got, want = ours(dict(img_path=str(path))), stock(
        dict(img_path=str(path)))
    assert np.array_equal(got['img'], want['img'])
    assert got['img_shape'] == want['img_shape'] == (16, 16)


def test_pillow_backend_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    with pytest.raises(UnreadableImageError,
                       match=rf"^Cannot read image '{path}': it cannot be "
                       r'decoded as an image \(UnidentifiedImageError'):
        CheckedLoadImageFromFile(imdecode_backend='pillow')(
            dict(img_path=str(path)))


def test_ignore_empty_and_missing_files_as_upstream(tmp_path: Path) -> None:
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    assert CheckedLoadImageFromFile(ignore_empty=True)(
        dict(img_path=str(empty))) is None
    with pytest.raises(FileNotFoundError):
        CheckedLoadImageFromFile()(dict(img_path=str(tmp_path / 'no.png')))


def test_folders_with_images_load_as_upstream(tmp_path: Path) -> None:
    for cls in ('cat', 'dog'):
        (tmp_path / cls).mkdir()
        _png(tmp_path / cls / '0.png')
    ours = CheckedCustomDataset(data_root=str(tmp_path), pipeline=[])
    stock = CustomDataset(data_root=str(tmp_path), pipeline=[])
    assert ours.metainfo['classes'] == stock.metainfo['classes']
    assert [ours.get_data_info(i) for i in range(len(ours))] == \
        [stock.get_data_info(i) for i in range(len(stock))]
