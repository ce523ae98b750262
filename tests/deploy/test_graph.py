"""InferenceGraph computes, as tensors, exactly what the classifier's
``predict`` attaches (no ONNX needed)."""
import pytest
import torch

from mmsaol.deploy import InferenceGraph, load_model, output_kind


def predict(model, inputs):
    """The classifier's own prediction path: data preprocessor, backbone,
    ``head.predict`` with maps."""
    with torch.no_grad():
        return model.test_step(dict(inputs=inputs))


def run(graph, inputs):
    with torch.no_grad():
        return dict(zip(graph.output_names, graph(inputs.float())))


def test_saol_graph_equals_predict(configs, checkpoints, canvases):
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'])
    graph = InferenceGraph(model, topk=3)
    out = run(graph, canvases)
    samples = predict(model, canvases)
    assert graph.output_names == ('probs', 'attention', 'class_maps',
                                  'class_map_labels')
    assert out['class_map_labels'].dtype == torch.int64
    # maps_topk is the head's (2); the graph's topk is its own (3).
    top3 = out['probs'].topk(3, dim=1).indices
    assert torch.equal(out['class_map_labels'], top3)
    for i, sample in enumerate(samples):
        # The same operations on the same tensors: equal but for kernel
        # rounding (there is none on the CPU; 1e-6 allows for it).
        torch.testing.assert_close(out['probs'][i], sample.pred_score,
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(out['attention'][i],
                                   sample.attention_map, rtol=0, atol=1e-6)
        labels = sample.class_map_labels
        assert torch.equal(out['class_map_labels'][i, :2], labels)
        torch.testing.assert_close(out['class_maps'][i, :2],
                                   sample.class_maps, rtol=0, atol=1e-6)
    # The attention is not uniform: the maps carry information.
    assert out['attention'].std(dim=(1, 2)).min() > 0
    # Each class map sums to its class's probability.
    sums = out['class_maps'].sum(dim=(2, 3))
    torch.testing.assert_close(sums, out['probs'].gather(1, top3))


def test_gapfc_branch_graph_equals_predict(configs, checkpoints, canvases):
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'],
                       cfg_options={'model.head.test_output': 'gapfc'})
    graph = InferenceGraph(model, head='gapfc')
    out = run(graph, canvases)
    assert list(out) == ['probs']
    expected = torch.stack([s.pred_score for s in predict(model, canvases)])
    torch.testing.assert_close(out['probs'], expected, rtol=0, atol=1e-6)


def test_cam_graph_equals_predict(configs, checkpoints, canvases):
    model = load_model(configs['gapfc_demo'], checkpoints['gapfc_demo'])
    graph = InferenceGraph(model)
    assert graph.kind == 'cam'
    out = run(graph, canvases)
    for i, sample in enumerate(predict(model, canvases)):
        torch.testing.assert_close(out['probs'][i], sample.pred_score)
        assert torch.equal(out['class_map_labels'][i],
                           sample.class_map_labels)
        torch.testing.assert_close(out['class_maps'][i], sample.class_maps)
    # The CAM of a class averages over the positions to its logit.
    model.eval()
    with torch.no_grad():
        logits = model(model.data_preprocessor(
            dict(inputs=canvases))['inputs'], mode='tensor')
    torch.testing.assert_close(
        out['class_maps'].mean(dim=(2, 3)),
        logits.gather(1, out['class_map_labels']), rtol=1e-5, atol=1e-5)


def test_without_normalisation_the_graph_takes_normalised_inputs(
        configs, checkpoints, canvases):
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'])
    normalised = model.data_preprocessor(dict(inputs=canvases))['inputs']
    with_norm = run(InferenceGraph(model), canvases)
    without = run(InferenceGraph(model, normalize=False), normalised)
    for name, value in with_norm.items():
        torch.testing.assert_close(without[name], value, rtol=0, atol=1e-6)


def test_topk_is_at_most_the_number_of_classes(configs, checkpoints):
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'])
    assert InferenceGraph(model, topk=50).topk == 10
    with pytest.raises(ValueError, match='topk must be a positive int'):
        InferenceGraph(model, topk=0)


def test_head_choices_are_checked(configs):
    saol = load_model(configs['saol_demo'],
                      cfg_options={'model.head.distillation': None})
    with pytest.raises(ValueError, match='--head gapfc needs the self-'
                       'distilled GAP-FC branch'):
        output_kind(saol, 'gapfc')
    gapfc = load_model(configs['gapfc_demo'])
    with pytest.raises(ValueError, match='not SAOLHead: leave --head out'):
        output_kind(gapfc, 'saol')
    assert output_kind(gapfc, 'gapfc') == 'gapfc'
    with pytest.raises(ValueError, match="head must be 'saol', 'gapfc'"):
        output_kind(saol, 'cam')


def test_a_checkpoint_of_another_model_is_refused(configs, checkpoints):
    with pytest.raises(ValueError, match='does not fit the config'):
        load_model(configs['saol_demo'], checkpoints['gapfc_demo'])


def test_class_names_come_from_the_checkpoint(configs, checkpoints):
    model = load_model(configs['saol_demo'], checkpoints['saol_demo'])
    assert list(model._dataset_meta['classes'])[:2] == ['digit 0', 'digit 1']
