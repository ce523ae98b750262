"""CheckpointMatchHook: a checkpoint of another config is refused or
reported, instead of loading silently into a partly random model."""
from pathlib import Path

import pytest
import torch

from mmsaol.engine import CheckpointMatchHook, CheckpointMismatchError


def save_model(make_runner, tmp_path: Path, name: str, **options) -> Path:
    """The weights of the tiny model built with ``options``, as a
    checkpoint."""
    model = make_runner(tmp_path / f'build_{name}', **options).model
    path = tmp_path / f'{name}.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_matching_checkpoint_loads(make_runner, tmp_path: Path) -> None:
    path = save_model(make_runner, tmp_path, 'same')
    runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
    runner.load_checkpoint(str(path))
    weight = runner.model.head.spatial_cls.weight
    saved = torch.load(path)['state_dict']['head.spatial_cls.weight']
    assert torch.equal(weight, saved)


def test_checkpoint_of_another_width_fits_nothing(make_runner,
                                                  tmp_path: Path) -> None:
    path = save_model(make_runner, tmp_path, 'wide', **{
        'model.backbone.stem_channels': 16,
        'model.backbone.base_channels': 16,
        'model.head.in_channels': (32, 64, 128),
        'model.head.channels': 16})
    runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
    with pytest.raises(CheckpointMismatchError,
                       match=r'^The checkpoint does not fit this model: 2 of '
                       r'\d+ model weights \(0\.0% of the values\) match the '
                       r'checkpoint by name and shape; other shape: '
                       r'backbone\.conv1\.weight: model \(8, 3, 3, 3\) vs '
                       r"checkpoint \(16, 3, 3, 3\), .*meta\['cfg'\]"):
        runner.load_checkpoint(str(path))


def test_other_num_classes_is_refused_for_evaluation(make_runner,
                                                     tmp_path: Path) -> None:
    path = save_model(make_runner, tmp_path, 'three', **{
        'model.head.num_classes': 3,
        'model.data_preprocessor.num_classes': 3})
    runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
    with pytest.raises(CheckpointMismatchError,
                       match=r'^The checkpoint fits the model only in part: '
                       r'\d+ of \d+ model weights \(9\d\.\d% of the values\) '
                       r'match the checkpoint by name and shape; other '
                       r'shape: head\.spatial_cls\.weight: model '
                       r'\(2, 24, 1, 1\) vs checkpoint \(3, 24, 1, 1\), '
                       r'head\.spatial_cls\.bias: .*Refusing to evaluate with'
                       r' a partly loaded model'):
        runner.load_checkpoint(str(path))


def test_other_num_classes_is_a_warning_when_fine_tuning(
        make_runner, tmp_path: Path) -> None:
    path = save_model(make_runner, tmp_path, 'three', **{
        'model.head.num_classes': 3,
        'model.data_preprocessor.num_classes': 3})
    work_dir = tmp_path / 'run'
    runner = make_runner(work_dir, max_epochs=1, load_from=str(path),
                         hooks=[CheckpointMatchHook()])
    runner.train()
    log = ''.join(p.read_text() for p in work_dir.glob('*/*.log'))
    assert 'The checkpoint fits the model only in part' in log
    assert 'These weights keep their initial values. That is expected ' \
        'when fine-tuning with a new head' in log
    assert runner.iter == 2


def test_resume_into_another_model_is_refused(make_runner,
                                              tmp_path: Path) -> None:
    path = save_model(make_runner, tmp_path, 'distilled')
    runner = make_runner(tmp_path / 'run', resume=True, load_from=str(path),
                         hooks=[CheckpointMatchHook()],
                         **{'model.head.distillation': None})
    with pytest.raises(CheckpointMismatchError,
                       match=r'not in the model: head\.gapfc\.weight, '
                       r'head\.gapfc\.bias.*Refusing to resume from'):
        runner.train()


def test_obsolete_attention_bias_is_not_a_foreign_key(make_runner,
                                                      tmp_path: Path) -> None:
    """A checkpoint of mmsaol 0.1.0 (with the attention output conv's bias,
    since removed) still evaluates under the strict check."""
    model = make_runner(tmp_path / 'build').model
    state = dict(model.state_dict())
    state['head.attention.1.bias'] = torch.zeros(1)
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
    runner.load_checkpoint(str(path))
    assert torch.equal(runner.model.head.spatial_cls.weight,
                       state['head.spatial_cls.weight'])
