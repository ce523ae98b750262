"""CheckpointMatchHook: a checkpoint of another config is refused or
reported, instead of loading silently into a partly random model; one
that fits by name and shape but not by content is refused."""
import re
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


def _corrupt(value: torch.Tensor, how: str):
    """``value`` as a checkpoint that fits by name and shape but not by
    content would hold it."""
    if how == 'numpy':
        return value.numpy()
    if how == 'meta':
        return value.to('meta')
    if not value.is_floating_point():
        return value
    if how == 'int8':
        return value.to(torch.int8)
    return torch.full_like(value, float('nan'))  # 'nan'


@pytest.mark.parametrize('how, problem', [
    ('numpy', 'is a numpy.ndarray, not a tensor'),
    ('meta', 'is on the meta device (it holds no values)'),
    ('int8', 'is torch.int8 (integer) where the model has torch.float32 '
     '(floating-point)'),
    ('nan', 'holds 216 of 216 values that are NaN or inf'),
])
@pytest.mark.parametrize('resume', [False, True])
def test_values_that_fit_only_by_shape_are_refused(
        make_runner, tmp_path: Path, how: str, problem: str,
        resume: bool) -> None:
    """A state_dict of numpy arrays, on the meta device, of int8 where the
    model has float32, or all NaN loaded "successfully" and evaluated at
    chance or 0%; refused with the file and the first bad entry, when
    evaluating (load_checkpoint, as tools/test.py) and resuming."""
    path = save_model(make_runner, tmp_path, 'good')
    state = torch.load(path)['state_dict']
    bad = tmp_path / f'{how}.pth'
    torch.save({'state_dict': {k: _corrupt(v, how) for k, v in
                               state.items()}, 'meta': {}}, bad)
    message = (rf"^The checkpoint '{re.escape(str(bad))}' does not hold "
               rf'usable values: backbone\.conv1\.weight {re.escape(problem)} '
               r'\(\d+ more entries too\)\. .*Re-save the trained model')
    if resume:
        runner = make_runner(tmp_path / 'run', resume=True,
                             load_from=str(bad),
                             hooks=[CheckpointMatchHook()])
        with pytest.raises(CheckpointMismatchError, match=message):
            runner.train()
    else:
        runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
        with pytest.raises(CheckpointMismatchError, match=message):
            runner.load_checkpoint(str(bad))


def test_half_precision_checkpoint_loads(make_runner,
                                         tmp_path: Path) -> None:
    """float16 weights for a float32 model are the same dtype class."""
    path = save_model(make_runner, tmp_path, 'good')
    state = torch.load(path)['state_dict']
    half = tmp_path / 'half.pth'
    torch.save({'state_dict': {
        k: v.half() if v.is_floating_point() else v
        for k, v in state.items()}, 'meta': {}}, half)
    runner = make_runner(tmp_path / 'run', hooks=[CheckpointMatchHook()])
    runner.load_checkpoint(str(half))
    torch.testing.assert_close(
        runner.model.head.spatial_cls.weight,
        state['head.spatial_cls.weight'].half().float())
