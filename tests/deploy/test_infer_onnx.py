"""infer-onnx: predictions of image files in ONNX Runtime with class names,
and the map pictures PyTorch's predictions draw."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmpretrain.apis import ImageClassificationInferencer

from mmsaol.deploy import load_model
from mmsaol.visualization import display_image, render_maps

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')
from mmsaol.apis.infer_onnx import main as infer
from mmsaol.deploy.runtime import OnnxClassifier

TOL = 1e-4


@pytest.fixture
def images(tmp_path, canvases):
    """Three demo canvases as PNG files in a folder."""
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, canvas in enumerate(canvases[:3]):
        mmcv.imwrite(canvas.permute(1, 2, 0).numpy(),
                     str(folder / f'canvas{i}.png'))
    return folder


def test_predictions_and_pictures_match_pytorch(saol_onnx, configs,
                                                checkpoints, images,
                                                tmp_path, capsys):
    out_dir = tmp_path / 'pictures'
    results = infer([saol_onnx.path, str(images), '--out-dir', str(out_dir),
                     '--batch-size', '2'])
    printed = capsys.readouterr().out.splitlines()
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'],
                       cfg_options={'model.head.maps_topk': 3})
    paths = [r['image'] for r in results]
    assert [osp.basename(p) for p in paths] == [
        'canvas0.png', 'canvas1.png', 'canvas2.png']
    samples = ImageClassificationInferencer(model)(
        paths, return_datasamples=True)
    inputs = [batch['inputs'][0] for batch in
              ImageClassificationInferencer(model).preprocess(paths)]
    for result, line, sample, image in zip(results, printed, samples,
                                           inputs):
        top = sample.pred_score.argmax().item()
        assert abs(result['pred_score'] - sample.pred_score[top]) < TOL
        ranked = sample.pred_score.sort(descending=True).values
        if ranked[0] - ranked[1] > 2 * TOL:
            assert result['pred_label'] == top
        # The class name from the metadata, and its probability.
        assert line.startswith(f"{result['image']}: {result['pred_class']} ")
        assert result['pred_class'] == f"digit {result['pred_label']}"
        # The picture PyTorch's prediction draws with the same function:
        # the maps agree within 1e-6, so only pixels whose colour sits on a
        # colour-map step may differ.
        expected = render_maps(display_image(image), sample,
                               model._dataset_meta['classes'], topk=3,
                               title=osp.splitext(osp.basename(
                                   result['image']))[0])
        picture = mmcv.imread(result['picture'], channel_order='rgb')
        assert picture.shape == expected.shape
        assert np.mean(picture != expected) < 0.01


def test_images_of_another_size_are_resized(saol_onnx, tmp_path):
    """Without a stored test pipeline (only PackInputs), an image of
    another size is resized to the exported input size."""
    session = OnnxClassifier(saol_onnx.path)
    session.meta['test_pipeline'] = None
    path = str(tmp_path / 'wide.png')
    rng = np.random.default_rng(0)
    mmcv.imwrite(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8), path)
    inputs, sample = session.load_image(path)
    assert inputs.shape == (3, 40, 40) and inputs.dtype == torch.uint8
    assert sample.img_shape == (40, 40) and sample.ori_shape == (50, 60)
    (predicted, ) = session.predict(inputs[None], [sample])
    assert predicted.class_maps.shape == (3, 5, 5)
    torch.testing.assert_close(predicted.pred_score.sum(), torch.tensor(1.0))


def test_a_model_without_maps_predicts_but_draws_nothing(
        gapfc_branch_onnx, images, tmp_path, capsys):
    out_dir = tmp_path / 'pictures'
    results = infer([gapfc_branch_onnx.path, str(images / 'canvas0.png'),
                     '--out-dir', str(out_dir), '--topk', '3'])
    captured = capsys.readouterr()
    assert 'has no maps (exported with --head gapfc)' in captured.err
    assert not out_dir.exists()
    assert len(results) == 1 and results[0]['picture'] is None
    assert len(results[0]['topk']) == 3
    scores = [p for _, _, p in results[0]['topk']]
    assert scores == sorted(scores, reverse=True)


def test_a_file_without_metadata_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node('Identity', ['inputs'], ['probs'])], 'plain',
        [helper.make_tensor_value_info('inputs', TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('probs', TensorProto.FLOAT, [1])])
    path = str(tmp_path / 'plain.onnx')
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(SystemExit) as raised:
        infer([path, str(tmp_path)])
    assert raised.value.code == 2


def test_a_one_channel_model_reads_images_in_grayscale(tmp_path):
    """A model of one input channel (e.g. Fashion-MNIST's) gets the file
    read in grayscale, as its test data come."""
    import json

    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node('Flatten', ['inputs'], ['probs'])], 'gray',
        [helper.make_tensor_value_info('inputs', TensorProto.FLOAT,
                                       ['batch', 1, 4, 4])],
        [helper.make_tensor_value_info('probs', TensorProto.FLOAT,
                                       ['batch', 16])])
    model = helper.make_model(graph)
    for key, value in dict(outputs='gapfc', input_size=[4, 4],
                           test_pipeline=[dict(type='PackInputs')]).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    path = str(tmp_path / 'gray.onnx')
    onnx.save(model, path)
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[..., 2] = 255  # red in BGR
    mmcv.imwrite(image, str(tmp_path / 'red.png'))
    session = OnnxClassifier(path)
    inputs, _ = session.load_image(str(tmp_path / 'red.png'))
    expected = mmcv.bgr2gray(image)
    assert inputs.shape == (1, 4, 4)
    assert torch.equal(inputs[0], torch.from_numpy(expected))
