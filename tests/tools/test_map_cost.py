"""What maps cost (mmsaol benchmark --maps): the model behind every row,
the maps each timed step produces, and the ratio arithmetic (no timing is
asserted)."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmsaol.apis.map_cost import (
    GAPFC_FORWARD,
    MAP_COST_SOURCES,
    SAOL_FORWARD,
    SAOL_MAPS,
    map_cost_configs,
    map_cost_step,
    map_cost_table,
    run_map_costs,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def rows():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'saol_demo.py'))
    return map_cost_configs(cfg.model.to_dict(), MAP_COST_SOURCES)


def test_rows_models_and_bases(rows):
    assert list(rows) == [SAOL_FORWARD, GAPFC_FORWARD, SAOL_MAPS, 'CAM',
                          'Grad-CAM', 'Grad-CAM++', 'Layer-CAM']
    types = {name: (cfg['type'], cfg['head']['type'])
             for name, (cfg, _) in rows.items()}
    assert types[SAOL_FORWARD] == ('SAOLClassifier', 'SAOLHead')
    assert types['CAM'] == ('ImageClassifier', 'CAMHead')
    assert types['Grad-CAM'] == ('GradCAMClassifier', 'LinearClsHead')
    assert rows[SAOL_MAPS][1] == SAOL_FORWARD
    assert {rows[n][1] for n in ('CAM', 'Grad-CAM', 'Layer-CAM')} == {
        GAPFC_FORWARD}
    with pytest.raises(ValueError, match='--maps source'):
        map_cost_configs(rows[SAOL_FORWARD][0], ['eigencam'])


@pytest.mark.parametrize('name,maps', [
    (SAOL_FORWARD, set()), (GAPFC_FORWARD, set()),
    (SAOL_MAPS, {'attention_map', 'class_maps'}),
    ('CAM', {'class_maps'}), ('Grad-CAM++', {'class_maps'})])
def test_each_step_produces_its_maps(rows, name, maps):
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(rows[name][0])).eval()
    samples = map_cost_step(model, 2, (40, 40), 'cpu')()
    assert len(samples) == 2
    for sample in samples:
        assert {k for k in ('attention_map', 'class_maps')
                if k in sample} == maps
        if maps:  # the top class only, as a user draws it
            assert sample.class_map_labels.tolist() == [
                int(sample.pred_label)]


def test_table_ratios():
    ips = {SAOL_FORWARD: 100.0, GAPFC_FORWARD: 125.0,
           'SAOL attention A': 99.0, 'Grad-CAM': 25.0}
    bases = {SAOL_FORWARD: SAOL_FORWARD, GAPFC_FORWARD: GAPFC_FORWARD,
             'SAOL attention A': SAOL_FORWARD, 'Grad-CAM': GAPFC_FORWARD}
    assert map_cost_table(ips, bases) == [
        [SAOL_FORWARD, '100.0', '1.000', '1.000'],
        [GAPFC_FORWARD, '125.0', '1.000', '1.250'],
        ['SAOL attention A', '99.0', '0.990', '0.990'],
        ['Grad-CAM', '25.0', '0.200', '0.250']]


def test_run_through_the_benchmark_loop(rows):
    result = run_map_costs(rows[SAOL_FORWARD][0], ['attention', 'cam'], 2,
                           (40, 40), 'cpu', warmup=0, iters=1, repeats=1)
    assert list(result['images_per_s']) == [SAOL_FORWARD, GAPFC_FORWARD,
                                            SAOL_MAPS, 'CAM']
    assert all(v > 0 for v in result['images_per_s'].values())
    assert result['ratio'][SAOL_FORWARD] == result['ratio'][
        GAPFC_FORWARD] == 1.0
    assert result['table'].splitlines()[0] == (
        '| map source | images/s | vs its plain forward | vs SAOL forward |')


def test_benchmark_maps_flag(tmp_path):
    from mmsaol.apis import benchmark
    data = benchmark.main([
        osp.join(REPO, 'configs', 'saol_demo.py'), '--input-size', '40',
        '--batch-size', '2', '--warmup', '0', '--iters', '1', '--repeats',
        '1', '--variants', 'gapfc', 'saol', '--no-train', '--maps', 'cam',
        '--out', str(tmp_path / 'bench.json')])
    assert list(data['maps']['images_per_s']) == [SAOL_FORWARD,
                                                  GAPFC_FORWARD, 'CAM']
    assert data['maps']['ratio'][GAPFC_FORWARD] == 1.0
