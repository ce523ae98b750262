"""The documentation: the site builds with warnings as errors, a broken
link or a reference to a name that does not exist fails the build, the
generated pages hold the package's own data, and README.md's summary of the
results is what the committed records give.

The build tests need the ``docs`` requirements (in the ``tests`` extra) and
are skipped without them.
"""
from __future__ import annotations

import glob
import html
import inspect
import io
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Dict, List

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = osp.join(REPO, 'docs')
#: The flags of the documented build command (docs/index.md, README.md).
SPHINX_FLAGS = ('-W', '-b', 'html')
README_MAX_LINES = 250


def sphinx_build(src: str, out: str, *flags: str
                 ) -> subprocess.CompletedProcess:
    for package in ('sphinx', 'myst_parser', 'furo'):
        pytest.importorskip(package)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run(
        [sys.executable, '-m', 'sphinx', *flags, '-q', '-d',
         osp.join(out, '.doctrees'), src, out],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.fixture(scope='module')
def site(tmp_path_factory) -> str:
    """The site built as documented (``sphinx-build -W -b html``)."""
    out = str(tmp_path_factory.mktemp('html'))
    result = sphinx_build(DOCS, out, *SPHINX_FLAGS)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def page_text(site: str, name: str) -> str:
    with open(osp.join(site, f'{name}.html')) as f:
        return html.unescape(re.sub(r'<[^>]+>', '', f.read()))


def test_site_builds_with_warnings_as_errors(site: str) -> None:
    pages = sorted(osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(DOCS, '*.md')))
    for name in pages:
        assert osp.isfile(osp.join(site, f'{name}.html')), name
        text = page_text(site, name)
        # a directive that was not run shows as its source text
        for raw in ('.. py:', '.. auto', '```{', '<!-- generated'):
            assert raw not in text, (name, raw)


def test_troubleshooting_page_is_the_code_s_table(site: str) -> None:
    """Generated from mmsaol.troubleshooting: no copy in docs/."""
    from mmsaol.troubleshooting import PROBLEMS
    with open(osp.join(DOCS, 'troubleshooting.md')) as f:
        source = f.read()
    assert '<!-- generated: troubleshooting -->' in source
    assert '| Message |' not in source
    text = page_text(site, 'troubleshooting')
    for row in PROBLEMS:
        for message in row.messages:
            assert message in text, row.key


def test_study_tables_are_the_records(site: str) -> None:
    """Every study with committed records has its tables on the results
    page (placed, or under "Other studies"), generated from
    results/<study>/results.json when the site is built: every cell that
    ``mmsaol study NAME --table`` prints is on the page."""
    from mmsaol.apis import study
    text = page_text(site, 'results')
    paths = sorted(glob.glob(osp.join(REPO, 'results', '*', 'results.json')))
    assert paths
    for path in paths:
        data = study.read_results(path)
        for line in study.markdown_tables(data).splitlines():
            cells = [c.strip() for c in line.strip('|').split('|')]
            if cells[0] and not cells[0].startswith('---'):
                for cell in cells:
                    # as rendered: without Markdown's emphasis and code marks
                    cell = re.sub(r'[*`]', '', cell)
                    assert cell in text, (data['study'], cell)


def test_every_recorded_localisation_is_on_the_results_page(
        site: str) -> None:
    """Localisation metrics of every study's records are on the page, also
    those of maps the current study tables leave out."""
    from mmsaol.apis import study
    text = page_text(site, 'results')
    for path in glob.glob(osp.join(REPO, 'results', '*', 'results.json')):
        data = study.read_results(path)
        for variant, metrics in data['results'].items():
            for key in metrics:
                if key.endswith('/max_box_acc'):
                    assert record_cell(data, variant, key) in text, (
                        data['study'], variant, key)


def test_api_reference_and_tools(site: str) -> None:
    from mmsaol.apis.entry import TOOLS
    text = page_text(site, 'api')
    for name in ('SAOLHead', 'SAOLClassifier', 'GeometryCutMix',
                 'SpatialLogitsLoss', 'AttentionLoss', 'SelfDistillLoss',
                 'WSOLMetric', 'AtomicCheckpointHook', 'SafeResumeHook',
                 'NonFiniteLossHook', 'CheckpointMatchHook', 'SAOLMapsHook'):
        assert 'class mmsaol.' in text and name in text, name
    for tool in TOOLS:
        assert f'mmsaol {tool.name}' in text, tool.name


def test_broken_links_and_missing_names_fail(tmp_path) -> None:
    """A small site with the docs' configuration: a link to a missing page
    or section and a reference to an mmsaol name that does not exist each
    give a warning (with -W: an error); a reference to a name that exists
    but is not documented does not."""
    for package in ('sphinx', 'myst_parser', 'furo'):
        pytest.importorskip(package)
    src = tmp_path / 'src'
    src.mkdir()
    shutil.copy(osp.join(DOCS, 'conf.py'), src)
    shutil.copytree(osp.join(DOCS, '_ext'), src / '_ext')
    (src / 'conf.py').write_text((src / 'conf.py').read_text().replace(
        "os.path.dirname(HERE)", repr(REPO)))
    pages: Dict[str, str] = {
        'index': '# t\n\n```{toctree}\nlink\nanchor\nname\nfine\n```\n',
        'link': '# Link\n\nSee [a page](missing_page.md).\n',
        'anchor': '# Anchor\n\nSee [a section](fine.md#no-such-section).\n',
        'name': '# Name\n\n```{eval-rst}\n:class:`mmsaol.models.NoSuchHead`'
                '\n```\n',
        'fine': '# Fine\n\n## Here\n\n[Here](#here), [Name](name.md)\n\n'
                '```{eval-rst}\n:func:`mmsaol.models.box_to_cell_coverage`, '
                ':class:`torch.Tensor`\n```\n',
    }
    for name, text in pages.items():
        (src / f'{name}.md').write_text(text)
    # In this process (mmsaol is imported already): the same extensions
    # and settings as the command line's build.
    from sphinx.application import Sphinx
    warnings = io.StringIO()
    out = tmp_path / 'out'
    Sphinx(str(src), str(src), str(out), str(out / '.doctrees'), 'html',
           status=None, warning=warnings, freshenv=True).build()
    log = warnings.getvalue()
    warned = {name for name in pages
              if re.search(rf'{name}\.md:\d+: WARNING', log)}
    assert warned == {'link', 'anchor', 'name'}, log[-4000:]
    assert 'NoSuchHead' in log


def test_every_saolhead_option_is_documented() -> None:
    from mmsaol.models import SAOLHead
    with open(osp.join(DOCS, 'configs.md')) as f:
        text = f.read()
    table = text[text.index('## Options and why the defaults'):]
    names = [n for n in inspect.signature(SAOLHead.__init__).parameters
             if n != 'self']
    missing = [n for n in names if not re.search(rf'`(head\.)?{n}`', table)]
    assert not missing, f'docs/configs.md does not document {missing}'


def test_layout_page_draws_the_layering() -> None:
    """The "imports" column of docs/layout.md is what tests/test_layering.py
    allows each part of mmsaol to import."""
    from test_layering import ALLOWED, BOTTOM
    with open(osp.join(DOCS, 'layout.md')) as f:
        rows = readme_table(f.read(), '| part | what | imports |')
    drawn: Dict[str, set] = {}
    for row in rows:
        parts = {re.sub(r'\.py$', '', p.split('/')[1]) if '/' in p
                 else re.sub(r'\.py$', '', p)
                 for p in re.findall(r'`([\w./]+)`', row[0])}
        imports = set() if row[2] == '—' else {
            name.strip() for name in row[2].split(',')}
        for part in parts:
            drawn.setdefault(part, set()).update(imports)
    for part, allowed in ALLOWED.items():
        assert drawn.get(part) == allowed, part
    assert BOTTOM - {'_quiet'} <= set(drawn)


def readme_table(readme: str, header: str) -> List[List[str]]:
    """The rows of the README table whose header line starts with
    ``header``, as lists of cells."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        rows.append([c.strip() for c in line.strip('|').split('|')])
    return rows


def record_cell(data: dict, variant: str, key: str) -> str:
    """Mean ± std over seeds of one metric of a study's records, formatted
    as the study's tables do."""
    from mmsaol.apis import study
    per_seed = data['results'][variant][key]
    return study.fmt_mean_std([float(v) for v in per_seed.values()])


#: README summary: row label -> study, and per column the variant and the
#: metric key of its records (``top1/<head>``, ``<map>/max_box_acc``).
S_DISTILL = 'SAOL + CutMix + self-sup. (self-annotated, S) + distillation'
SUMMARY = {
    'Demo, top-1 (%)': ('demo', [
        ('GAP-FC + CutMix', 'top1/default'),
        ('SAOL + CutMix', 'top1/default'),
        (S_DISTILL, 'top1/saol'), (S_DISTILL, 'top1/gapfc')]),
    'Demo, MaxBoxAcc (%)': ('demo', [
        ('GAP-FC + CutMix', 'cam/max_box_acc'),
        ('SAOL + CutMix', 'attention/max_box_acc'),
        (S_DISTILL, 'attention/max_box_acc'), None]),
    'Fashion-MNIST, top-1 (%)': ('fashion-mnist', [
        ('GAP-FC + CutMix', 'top1/default'), ('SAOL', 'top1/default'),
        ('SAOL + S + distillation', 'top1/saol'),
        ('SAOL + S + distillation', 'top1/gapfc')]),
}


def test_readme_summary_is_the_records() -> None:
    """The README's one-table summary of the results is what the committed
    records give (the moved README-vs-records check)."""
    from mmsaol.apis import study
    with open(osp.join(REPO, 'README.md')) as f:
        rows = readme_table(f.read(), '| | GAP-FC + CutMix |')
    assert [row[0] for row in rows] == list(SUMMARY)
    for row in rows:
        name, sources = SUMMARY[row[0]]
        data = study.read_results(osp.join(REPO, 'results', name,
                                           'results.json'))
        expected = ['—' if source is None else record_cell(data, *source)
                    for source in sources]
        assert row[1:] == expected, row[0]


def test_readme_is_short() -> None:
    with open(osp.join(REPO, 'README.md')) as f:
        assert len(f.read().splitlines()) <= README_MAX_LINES


def test_docs_extra_is_in_the_tests_extra() -> None:
    """CI installs the tests extra; it must bring what the build needs."""
    if sys.version_info < (3, 11):
        pytest.skip('tomllib needs Python 3.11')
    import tomllib
    with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
        extras = tomllib.load(f)['project']['optional-dependencies']
    assert set(extras['docs']) <= set(extras['tests'])
