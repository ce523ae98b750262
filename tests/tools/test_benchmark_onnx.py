"""tools/benchmark.py --onnx: ONNX Runtime and PyTorch images/s of the same
GAP-FC and SAOL graphs, side by side, with the outputs compared."""
import json

import pytest

from mmsaol.apis.benchmark import main as benchmark

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

TOL = 1e-4


def test_onnx_against_pytorch_on_the_demo_model(tmp_path, capsys):
    out = tmp_path / 'speed.json'
    report = benchmark([
        'configs/saol_demo.py', '--onnx', '--input-size', '40',
        '--batch-size', '4', '--warmup', '1', '--iters', '1', '--repeats',
        '3', '--threads', '1', '--out', str(out)])
    table = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    rows = {r['name']: r for r in report['onnx']}
    assert list(rows) == ['gapfc', 'saol']
    assert rows['gapfc']['outputs'] == ['probs']
    assert rows['saol']['outputs'] == [
        'probs', 'attention', 'class_maps', 'class_map_labels']
    for row in rows.values():
        for runtime in ('torch', 'onnx'):
            runs = row[f'{runtime}_runs']
            assert len(runs) == 3 and min(runs) > 0
            assert sorted(runs)[1] == pytest.approx(
                row[f"{runtime}_images_per_s"])
        assert row['speedup'] == pytest.approx(
            row['onnx_images_per_s'] / row['torch_images_per_s'])
        # Both runtimes computed the same outputs on the timed batch.
        assert set(row['max_abs_diff']) == {
            n for n in row['outputs'] if n != 'class_map_labels'}
        assert max(row['max_abs_diff'].values()) < TOL
    assert report['setup']['threads'] == 1
    assert '| SAOL | probs, attention, class_maps, class_map_labels |' in table


def test_onnx_needs_the_cpu_and_float32(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark(['configs/saol_demo.py', '--onnx', '--amp',
                   '--device', 'cpu', '--input-size', '40'])
    assert exit_info.value.code == 2
    assert 'leave out --amp' in capsys.readouterr().err
