"""Model configs made from other configs: the GAP-FC twin of a SAOL model
(it has the parameters of the self-distilled branch), and maps at inference
(config switches, mmpretrain's inferencer with a SAOL config + checkpoint,
the properties of the attached maps)."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.apis import ImageClassificationInferencer, get_model
from mmpretrain.registry import MODELS

from mmsaol.apis.visualize_maps import build_maps_model
from mmsaol.evaluation import upsample_map
from mmsaol.model_configs import gapfc_twin, is_saol_head, maps_config
from mmsaol.models import SAOLHead

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                   'configs')
CLASSES = [f'digit {i}' for i in range(10)]


def demo_cfg(name):
    return Config.fromfile(osp.join(CONFIGS, name))


@pytest.fixture(scope='module')
def saol_checkpoint(tmp_path_factory):
    """A randomly initialised demo SAOL model saved as a checkpoint, with
    non-zero attention weights so the attention map is not uniform."""
    model = get_model(demo_cfg('saol_demo.py'))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
    path = str(tmp_path_factory.mktemp('ckpt') / 'saol.pth')
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': CLASSES}}}, path)
    return path


def test_gapfc_twin_has_the_parameters_of_the_gapfc_branch():
    """Built, the twin's backbone is the SAOL model's (without the stages
    only SAOL reads) and its linear layer has the shapes of the SAOL head's
    GAP-FC branch: the branch's weights load into it."""
    model = demo_cfg('saol_demo.py').model.to_dict()
    given = copy.deepcopy(model)
    twin = gapfc_twin(model)
    assert model == given  # input untouched
    assert twin['type'] == 'ImageClassifier'
    assert twin['backbone']['out_indices'] == (3, )
    assert twin['neck'] == dict(type='GlobalAveragePooling')
    assert twin['head'] == dict(type='LinearClsHead', num_classes=10,
                                in_channels=128, loss=model['head']['loss'])
    # mmpretrain's own CutMix, without the argument only GeometryCutMix has.
    model['train_cfg']['augments'][0]['per_sample_box'] = True
    assert gapfc_twin(model)['train_cfg']['augments'] == [
        dict(type='CutMix', alpha=1.0)]

    saol = MODELS.build(model).state_dict()
    gapfc = MODELS.build(twin).state_dict()
    backbone = {k for k in gapfc if k.startswith('backbone.')}
    assert backbone and backbone <= set(saol)
    for key in backbone:
        assert gapfc[key].shape == saol[key].shape, key
    for name in ('weight', 'bias'):
        assert gapfc[f'head.fc.{name}'].shape == \
            saol[f'head.gapfc.{name}'].shape


def test_gapfc_twin_loss_and_the_way_back():
    model = demo_cfg('saol_demo.py').model.to_dict()
    gt_loss = dict(type='LabelSmoothLoss', label_smooth_val=0.1)
    model['head']['distillation'] = dict(gt_loss=gt_loss)
    model['head']['topk'] = (1, 3)
    twin = gapfc_twin(model)
    assert twin['head']['loss'] == gt_loss  # the branch's own loss
    assert twin['head']['topk'] == (1, 3)
    back = maps_config(Config(dict(model=twin)))
    assert back.model.head.type == 'CAMHead' and back.model.neck is None


def test_gapfc_twin_needs_a_saol_head():
    assert is_saol_head('SAOLHead') and is_saol_head(SAOLHead)
    assert not is_saol_head('LinearClsHead') and not is_saol_head(None)
    with pytest.raises(ValueError, match="'LinearClsHead', not SAOLHead"):
        gapfc_twin(demo_cfg('gapfc_demo.py').model.to_dict())


def test_maps_config_switches():
    saol = maps_config(demo_cfg('saol_demo.py'), topk='all')
    assert saol.model.head.with_maps is True
    assert saol.model.head.maps_topk == 10
    gapfc_cfg = demo_cfg('gapfc_demo.py')
    gapfc = maps_config(gapfc_cfg, topk=3)
    assert gapfc.model.head.type == 'CAMHead' and gapfc.model.neck is None
    assert gapfc.model.head.maps_topk == 3
    assert gapfc_cfg.model.head.type == 'LinearClsHead'  # input untouched
    other = demo_cfg('gapfc_demo.py')
    other.model.neck = dict(type='LinearNeck', in_channels=128,
                            out_channels=128)
    with pytest.raises(ValueError, match='GlobalAveragePooling'):
        maps_config(other)
    other.model.head.type = 'VisionTransformerClsHead'
    with pytest.raises(ValueError, match='SAOLHead'):
        maps_config(other)
    with pytest.raises(ValueError, match='topk'):
        maps_config(demo_cfg('saol_demo.py'), topk=0)


def test_inferencer_attaches_maps_from_config_and_checkpoint(
        saol_checkpoint):
    """mmpretrain's ImageClassificationInferencer with a SAOL config whose
    head has ``with_maps=True`` (what ``--cfg-options
    model.head.with_maps=True`` does) and a saved checkpoint."""
    cfg = demo_cfg('saol_demo.py')
    cfg.merge_from_dict({'model.head.with_maps': True})
    inferencer = ImageClassificationInferencer(cfg, pretrained=saol_checkpoint)
    assert inferencer.classes == CLASSES       # from the checkpoint meta
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
              rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)]
    results = inferencer(images, return_datasamples=True)
    for image, sample in zip(images, results):
        # The demo's test pipeline resizes every image to the 40x40 canvas:
        # 5x5 maps at the demo backbone's stride 8.
        attention = sample.attention_map
        assert attention.shape == (5, 5)
        assert float(attention.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(attention.max() - attention.min()) > 1e-4
        assert sample.class_maps.shape == (2, 5, 5)
        assert sample.class_map_labels.tolist() == \
            sample.pred_score.topk(2).indices.tolist()
        assert tuple(sample.img_shape) == (40, 40)
        assert tuple(sample.ori_shape) == image.shape[:2]
        upsampled = upsample_map(sample.class_maps, sample.ori_shape)
        assert upsampled.shape == (2, *image.shape[:2])
    # The plain-dict output of the inferencer still works.
    plain = inferencer(images[0])[0]
    assert plain['pred_class'] in CLASSES


def test_class_maps_sum_to_the_prediction(saol_checkpoint):
    model = build_maps_model(osp.join(CONFIGS, 'saol_demo.py'),
                             saol_checkpoint, topk='all')
    assert model._dataset_meta['classes'] == CLASSES
    batch = {'inputs': [torch.randint(0, 255, (3, 40, 40),
                                      dtype=torch.uint8) for _ in range(3)]}
    with torch.no_grad():
        samples = model.test_step(batch)
    for sample in samples:
        maps = sample.class_maps
        assert maps.shape == (10, 5, 5)
        # A * Y_c summed over positions is y_c; over classes it is A.
        by_label = torch.zeros(10)
        by_label[sample.class_map_labels] = maps.sum(dim=(1, 2))
        torch.testing.assert_close(by_label, sample.pred_score)
        torch.testing.assert_close(maps.sum(0), sample.attention_map)
