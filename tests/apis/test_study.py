"""The study tool: statistics against hand-computed values, study files,
records, and a tiny real study run twice (the second run trains nothing
and prints the same table)."""
import json
import math
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from mmsaol.apis import study as st

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_paired_difference_by_hand():
    values = {0: 90.0, 1: 91.0, 2: 92.5, 5: 50.0}
    base = {0: 89.0, 1: 90.5, 2: 90.0, 3: 10.0}
    diff = st.paired_difference(values, base)
    # Common seeds 0-2; differences 1.0, 0.5, 2.5: mean 4/3, sample
    # variance ((1/3)^2 + (5/6)^2 + (7/6)^2) / 2 = 13/12, t(0.975, 2) =
    # 4.30265 (tables: 4.303).
    assert diff['seeds'] == [0, 1, 2]
    assert diff['above'] == 3
    assert diff['mean'] == pytest.approx(4 / 3)
    assert diff['std'] == pytest.approx(math.sqrt(13 / 12))
    assert diff['half_width'] == pytest.approx(
        4.30265 * math.sqrt(13 / 12) / math.sqrt(3), rel=1e-5)
    assert st.fmt_difference(diff) == '+1.33 [-1.25, +3.92] (3/3 above)'


def test_single_seed_and_no_common_seed():
    one = st.paired_difference({0: 2.0}, {0: 1.5, 1: 3.0})
    assert one['mean'] == 0.5 and one['half_width'] is None
    assert st.fmt_difference(one) == '+0.50 (1/1 above)'
    assert st.paired_difference({0: 1.0}, {1: 1.0}) is None
    assert st.fmt_mean_std([1.0, 2.0, 3.0]) == '2.00 ± 1.00'
    assert st.fmt_mean_std([1.0]) == '1.00'


def test_t_quantile_table():
    # Printed tables of Student's t (two-sided 95%), to their 3 decimals.
    for df, quantile in ((1, 12.706), (2, 4.303), (4, 2.776), (22, 2.074),
                         (120, 1.980)):
        assert st.t_quantile(df) == pytest.approx(quantile, abs=5e-4)
    assert st.t_quantile(10 ** 6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError, match='df'):
        st.t_quantile(0)


def test_study_file_errors(tmp_path):
    path = tmp_path / 's.json'
    path.write_text(json.dumps(dict(name='x', variants=[
        dict(name='a', config='c.py', option=['typo'])])))
    with pytest.raises(ValueError, match='"options"'):
        st.load_study(str(path))
    path.write_text(json.dumps(dict(name='x', baseline='b', variants=[
        dict(name='a', config='c.py')])))
    with pytest.raises(ValueError, match="no variant 'b'"):
        st.load_study(str(path))
    with pytest.raises(FileNotFoundError, match='known name'):
        st.load_study(str(tmp_path / 'missing.json'))


@pytest.mark.parametrize('name', ['fashion-mnist', 'fashion-mnist-ablation',
                                  'demo', 'clutter',
                                  'fashion-mnist-converged'])
def test_named_studies_load(name):
    study = st.load_study(name)
    assert study.variants
    for variant in study.variants:
        assert osp.isfile(osp.join(REPO, variant.config)), variant.config


def test_stale_record_is_not_used(tmp_path):
    variant = st.Variant('v', 'configs/gapfc_demo.py', ['a=1'])
    path = tmp_path / 'seed0.json'
    record = dict(config=variant.config, options=['a=1'],
                  metrics={'top1/default': 50.0})
    path.write_text(json.dumps(record))
    assert st.load_record(str(path), variant) == record
    assert st.load_record(str(path), variant, extra=['b=2']) is None
    changed = st.Variant('v', 'configs/gapfc_demo.py', ['a=2'])
    assert st.load_record(str(path), changed) is None
    two_heads = st.Variant('v', 'configs/gapfc_demo.py', ['a=1'],
                           heads=('saol', 'gapfc'))
    assert st.load_record(str(path), two_heads) is None


def test_prepare_fashion_mnist(tmp_path):
    import gzip

    from mmsaol.datasets import fashion_mnist as fm
    source = tmp_path / 'src'
    source.mkdir()
    for name in fm.FASHION_MNIST_FILES:
        with gzip.open(source / f'{name}.gz', 'wb') as f:
            f.write(name.encode())
    dest = tmp_path / 'data'
    fm.prepare_fashion_mnist(str(dest), sources=[str(source)])
    for name in fm.FASHION_MNIST_FILES:
        assert (dest / name).read_bytes() == name.encode()
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        fm.prepare_fashion_mnist(str(tmp_path / 'other'),
                                 sources=[str(tmp_path / 'none')])
    with pytest.raises(ValueError, match='prepare'):
        st.prepare_data('mnist')


def _tuned_study(tmp_path):
    path = tmp_path / 'tuned.json'
    path.write_text(json.dumps(dict(
        name='tuned', seeds=[0, 1], baseline='A',
        tune=dict(option='optim_wrapper.optimizer.lr', values=[0.05, 0.1]),
        fit_options=['test_dataloader.dataset.indices=8'],
        variants=[dict(name='A', config='a.py'),
                  dict(name='B', config='b.py', options=['x=1'])])))
    return st.load_study(str(path))


def _record(results, study, variant, seed, val, test, train=None):
    metrics = {'top1/default': test, st.VAL_KEY: val}
    if train is not None:
        metrics['train_top1/default'] = train
    st._write_json(st.record_path(str(results), study, variant, seed), dict(
        seed=seed, config=variant.config, options=list(variant.options),
        metrics=metrics, curve=[[1, val - 10.0], [2, val]]))


def test_tuned_study_chooses_on_validation(tmp_path):
    """The grid runs first; each variant's value with the best validation
    top-1 (not test top-1) then runs at every seed, and the tables report
    those runs, the grid and the fit."""
    study = _tuned_study(tmp_path)
    results = tmp_path / 'results'
    a, b = study.variants
    tune = study.tune
    assert tune.label == 'lr' and tune.seed == 0
    plan = st.run_plan(study, str(results))
    assert [(v.name, s) for v, s in plan] == [
        ('A @ lr=0.05', 0), ('A @ lr=0.1', 0), ('B @ lr=0.05', 0),
        ('B @ lr=0.1', 0)]
    assert plan[1][0].options == ['optim_wrapper.optimizer.lr=0.1']
    assert plan[3][0].options == ['x=1', 'optim_wrapper.optimizer.lr=0.1']
    # Grid runs score no maps; the study's runs at the chosen value do.
    mapped = st.Variant('M', 'm.py', maps=('cam', ))
    assert tune.run(mapped, 0.1).maps == ()
    assert tune.run(mapped, 0.1, maps=True).maps == ('cam', )
    # A: 0.1 wins on validation although 0.05 is better on test.
    _record(results, study, tune.run(a, 0.05), 0, 80.0, 90.0, 95.0)
    _record(results, study, tune.run(a, 0.1), 0, 85.0, 70.0, 99.0)
    _record(results, study, tune.run(b, 0.05), 0, 60.0, 60.0)
    assert st.chosen_value(study, a, str(results)) == 0.1
    assert st.chosen_value(study, b, str(results)) is None  # grid open
    assert [(v.name, s) for v, s in st.run_plan(
        study, str(results), phase='final')] == [
        ('A @ lr=0.1', 0), ('A @ lr=0.1', 1)]
    assert [v.name for v, _ in st.run_plan(study, str(results),
                                           phase='tune')][-1] == 'B @ lr=0.1'
    _record(results, study, tune.run(a, 0.1), 1, 87.0, 72.0, 97.0)
    data = st.write_results(study, str(results))
    assert data['results']['A']['top1/default'] == {'0': 70.0, '1': 72.0}
    assert data['tuning']['chosen'] == {'A': 0.1}
    # Before any variant has its chosen runs: the tuning table alone.
    assert st.markdown_tables(dict(results={}, tuning=data['tuning'])
                              ).startswith('| variant | lr 0.05 | lr 0.1 |')
    assert data['tuning']['val_top1'] == {
        'A': {'0.05': 80.0, '0.1': 85.0}, 'B': {'0.05': 60.0}}
    tables = st.markdown_tables(st.read_results(
        st.results_path(study, str(results))))
    assert '| A |  | 71.00 ± 1.41 | 0: 70.00, 1: 72.00 | — |' in tables
    assert '| A | 80.00 | **85.00** | 0.1 |' in tables
    assert '| B | 60.00 | — | — |' in tables
    # train 99, 97 vs test 70, 72: mean gap +27.00; curve at epochs 1, 2.
    assert ('| A |  | 98.00 ± 1.41 | 71.00 ± 1.41 | 86.00 ± 1.41 | '
            '+27.00 | ep 1: 76.00, ep 2: 86.00 |') in tables


def test_tune_entry_errors(tmp_path):
    path = tmp_path / 's.json'
    for tune in (dict(values=[1, 2]), dict(option='lr', values=[1]),
                 dict(option='lr', values=[1, 2], typo=1)):
        path.write_text(json.dumps(dict(name='x', tune=tune, variants=[
            dict(name='a', config='c.py')])))
        with pytest.raises(ValueError, match='"tune"'):
            st.load_study(str(path))
    path.write_text(json.dumps(dict(name='x', prepare='mnist', variants=[
        dict(name='a', config='c.py')])))
    with pytest.raises(ValueError, match='prepare'):
        st.load_study(str(path))


def test_read_curve(tmp_path):
    """Validation lines of every training log, a resumed run's later log
    winning; training lines and broken lines are skipped."""
    for stamp, lines in (('20260101_000000', [
            '{"lr": 0.1, "loss": 2.0, "step": 10}',
            '{"accuracy/top1": 50.0, "step": 1}',
            '{"accuracy/top1": 55.0, "step": 2}', 'not json']),
            ('20260101_010000', ['{"accuracy/top1": 56.0, "step": 2}',
                                 '{"accuracy/top1": 60.0, "step": 3}'])):
        folder = tmp_path / stamp / 'vis_data'
        folder.mkdir(parents=True)
        (folder / 'scalars.json').write_text('\n'.join(lines) + '\n')
    assert st.read_curve(str(tmp_path)) == [[1, 50.0], [2, 56.0],
                                            [3, 60.0]]
    assert st.read_curve(str(tmp_path / 'none')) == []


TINY = ['train_dataloader.dataset.indices=64',
        'train_dataloader.batch_size=32',
        'val_dataloader.dataset.indices=64',
        'test_dataloader.dataset.indices=64', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1']


def test_tiny_study_resumes(tmp_path):
    """Run twice: the second run trains nothing (the work dirs are even
    gone, as between sessions) and prints the same table."""
    study = tmp_path / 'tiny.json'
    study.write_text(json.dumps(dict(
        name='tiny', seeds=[0], baseline='GAP-FC',
        variants=[dict(name='GAP-FC', config='configs/gapfc_demo.py',
                       options=TINY)])))
    work, results = tmp_path / 'work', tmp_path / 'results'
    cmd = [sys.executable, osp.join(REPO, 'tools', 'study.py'), str(study),
           '--work-dir', str(work), '--results-dir', str(results)]

    def run():
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    first = run()
    assert '[1 done, 0 left] GAP-FC seed 0' in first
    record = json.loads(
        (results / 'tiny' / 'GAP_FC' / 'seed0.json').read_text())
    assert record['options'] == TINY and record['seed'] == 0
    assert (work / 'tiny' / 'GAP_FC' / 'seed0' /
            'study_record.json').is_file()
    table = first[first.index('| variant'):]
    assert re.search(r'\| GAP-FC \|  \| \d+\.\d\d \| 0: \d+\.\d\d \| — \|',
                     table)
    shutil.rmtree(work)
    second = run()
    assert 'done' not in second and not work.exists()
    assert second == table
    data = st.read_results(str(results / 'tiny' / 'results.json'))
    assert st.markdown_tables(data) == table
    assert data['results']['GAP-FC']['top1/default'] == {
        0: record['metrics']['top1/default']}


def test_update_readme(tmp_path):
    begin, end = st.readme_block('x')
    path = tmp_path / 'README.md'
    path.write_text(f'# t\n{begin}\nold\n{end}\ntail\n')
    st.update_readme(str(path), 'x', '| new |\n')
    text = path.read_text()
    assert text == f'# t\n{begin}\n| new |\n{end}\ntail\n'
    assert st.readme_tables(text, 'x') == '| new |\n'
    with pytest.raises(ValueError, match="no block for study 'y'"):
        st.update_readme(str(path), 'y', '')


def test_shared_variant_reads_the_other_study(tmp_path):
    """A variant with ``study`` uses (and would write) that study's
    records: the ablation's reference rows are the main study's runs."""
    shared = st.Variant('v', 'c.py', study='main')
    own = st.Variant('w', 'c.py')
    study = st.Study('ablation', [shared, own], seeds=[0])
    assert st.record_path('r', study, shared, 0) == osp.join(
        'r', 'main', 'v', 'seed0.json')
    assert st.record_path('r', study, own, 0) == osp.join(
        'r', 'ablation', 'w', 'seed0.json')
    path = tmp_path / 'main' / 'v' / 'seed0.json'
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(dict(seed=0, config='c.py', options=[],
                                    metrics={'top1/default': 1.5})))
    assert st.collect(study, str(tmp_path)) == {
        'v': {'top1/default': {0: 1.5}}}


def test_comparisons_table():
    data = dict(baseline='a', comparisons=[['c', 'b']], results={
        'a': {'top1/default': {0: 80.0, 1: 82.0}},
        'b': {'top1/default': {0: 81.0, 1: 81.0}},
        'c': {'top1/saol': {0: 82.0, 1: 83.0},
              'top1/gapfc': {0: 0.0, 1: 0.0}}})
    text = st.markdown_tables(data)
    # c - b per seed: 1.0, 2.0; mean 1.5, std sqrt(0.5), t(1) 12.706.
    half = 12.706 * math.sqrt(0.5) / math.sqrt(2)
    assert (f'| c | b | +1.50 [{1.5 - half:+.2f}, {1.5 + half:+.2f}] '
            '(2/2 above) |') in text
    assert '| b |  | 81.00 ± 0.00 | 0: 81.00, 1: 81.00 | -0.00' not in text
    assert '| b |  | 81.00 ± 0.00 | 0: 81.00, 1: 81.00 | +0.00 [' in text


def test_claims_keep_two_processes_apart(tmp_path):
    work = str(tmp_path / 'run')
    assert st.claim_run(work)  # free
    assert st.claim_run(work)  # already ours
    st.release_run(work)
    claim = tmp_path / 'run' / 'study.claim'
    claim.write_text('1')  # pid 1 is alive: another process's run
    assert not st.claim_run(work)
    gone = subprocess.run([sys.executable, '-c',
                           'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    claim.write_text(gone)  # its process has exited: a stale claim
    assert st.claim_run(work)
    assert claim.read_text() == str(os.getpid())
