"""A misspelt option of an mmsaol component is named, with the closest
valid option, instead of Python's "unexpected keyword argument"."""
import pytest
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

HEAD = dict(type='SAOLHead', num_classes=5, in_channels=(8, 16), channels=8)


def test_misspelt_head_option_names_the_closest_match():
    with pytest.raises(ValueError, match=(
            r"SAOLHead has no option 'self_supervison' \(did you mean "
            r"'self_supervision'\?\)\. Its options are: .*distillation")):
        MODELS.build(dict(HEAD, self_supervison=dict(target='self')))


@pytest.mark.parametrize('cfg, key, close', [
    (dict(type='SAOLClassifier', backbone=dict(type='ResNet_CIFAR', depth=18),
          head=HEAD, unmixed_nrom='batch'), 'unmixed_nrom', 'unmixed_norm'),
    (dict(type='GeometryCutMix', alpha=1.0, per_sample_boxes=True),
     'per_sample_boxes', 'per_sample_box'),
    (dict(type='SpatialLogitsLoss', weight=2.0), 'weight', 'loss_weight'),
    (dict(type='SelfDistillLoss', temperture=2.0), 'temperture',
     'temperature'),
    (dict(type='CAMHead', num_classes=5, in_channels=8, topk_maps=2),
     'topk_maps', 'maps_topk'),
    (dict(type='CAMHead', num_classes=5, in_channels=8, colour='red'),
     'colour', None),
])
def test_every_component_names_unknown_options(cfg, key, close):
    hint = rf" \(did you mean '{close}'\?\)" if close else ''
    registry = BATCH_AUGMENTS if cfg['type'] == 'GeometryCutMix' else MODELS
    with pytest.raises(ValueError, match=rf"has no option '{key}'{hint}\."):
        registry.build(cfg)


def test_valid_options_still_build():
    head = MODELS.build(dict(HEAD, self_supervision=dict(target='label')))
    assert head.self_supervision_target == 'label'
    assert head.needs_mix_geometry and not head.needs_unmixed_batch
    # Options inherited through **kwargs (ImageClassifier's) are accepted.
    model = MODELS.build(dict(
        type='SAOLClassifier', backbone=dict(type='ResNet_CIFAR', depth=18),
        head=HEAD, neck=None, unmixed_norm='running'))
    assert model.head.num_classes == 5
