"""mmsaol's model index: every shipped config is a named model of
mmpretrain's model hub, and the names work with ``get_model`` and
``inference_model``.

The expected names come from the ``configs/`` folder (every config outside
``_base_``; SAOL ones are those whose model has a ``SAOLHead``), so a config
added without its ``configs/metafile.yml`` entry fails here.
"""
from __future__ import annotations

import functools
import glob
import os.path as osp
import warnings
from typing import Dict

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain import get_model, inference_model, list_models
from modelindex.load_model_index import load

from mmsaol.apis.model_index import model_index_path, register_model_index
from mmsaol.compat.config import mim_root
from mmsaol.models import SAOLClassifier, SAOLHead

CONFIG_ROOT = osp.join(mim_root(), 'configs')


def shipped_configs() -> Dict[str, str]:
    """Model name (file name without ``.py``) -> config path, for every
    config of the configs folder outside ``_base_``."""
    paths = [p for p in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'),
                                  recursive=True)
             if '_base_' not in osp.relpath(p, CONFIG_ROOT).split(osp.sep)]
    names = {osp.splitext(osp.basename(p))[0]: p for p in paths}
    assert len(names) == len(paths), 'two configs share a file name'
    return names


@functools.lru_cache(maxsize=None)
def load_config(path: str) -> Config:
    return Config.fromfile(path)


@functools.lru_cache(maxsize=None)
def index_entries() -> dict:
    index = load(model_index_path())
    index.build_models_with_collections()
    return {model.name: model for model in index.models}


def test_every_shipped_config_has_an_entry():
    configs = shipped_configs()
    entries = index_entries()
    missing = sorted(set(configs) - set(entries))
    assert not missing, (
        f'configs without an entry in configs/metafile.yml: {missing}')
    stale = sorted(set(entries) - set(configs))
    assert not stale, f'entries without a config: {stale}'
    for name, entry in entries.items():
        assert osp.samefile(osp.join(mim_root(), entry.config),
                            configs[name])
        assert not entry.weights, f'{name}: no published checkpoint exists'
        assert [r.task for r in entry.results] == ['Image Classification']


def test_list_models_lists_every_saol_config():
    configs = shipped_configs()
    saol = {name for name, path in configs.items()
            if load_config(path).model.head.type == 'SAOLHead'}
    assert 'saol_demo' in saol
    assert set(list_models('*saol*')) == saol
    assert set(configs) <= set(list_models())


def test_entries_match_their_configs():
    configs = shipped_configs()
    for name, entry in index_entries().items():
        cfg = load_config(configs[name])
        meta = entry.metadata
        assert meta.epochs == cfg.train_cfg.max_epochs, name
        is_saol = cfg.model.head.type == 'SAOLHead'
        assert ('SAOL' in meta.architecture) == is_saol, name


def test_registration_is_idempotent():
    before = list_models()
    assert register_model_index() is False
    assert list_models() == before


def test_get_model_builds_the_demo_model():
    model = get_model('saol_demo')
    assert isinstance(model, SAOLClassifier)
    assert isinstance(model.head, SAOLHead)
    assert model.head.num_classes == 10
    assert model._metainfo.name == 'saol_demo'
    assert len(model._dataset_meta['classes']) == 10


@pytest.mark.filterwarnings('ignore:Unable to find pre-defined checkpoint')
def test_inference_model_on_an_image_file(tmp_path):
    """An untrained demo model predicts one of its classes for a PNG file
    of the demo's canvas size."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    path = str(tmp_path / 'canvas.png')
    assert cv2.imwrite(path, image)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        result = inference_model('saol_demo', path)
    classes = [str(i) for i in range(10)]
    assert result['pred_class'] == classes[result['pred_label']]
    scores = np.asarray(result['pred_scores'])
    assert scores.shape == (10, )
    # Ten float32 probabilities of a softmax: their sum is 1 up to a few
    # units of float32 rounding (~1e-7 each).
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    assert result['pred_score'] == pytest.approx(scores.max())
