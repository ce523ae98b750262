"""tools/visualize_maps.py: image files, a folder and a data split, with a
SAOL checkpoint and with a GAP-FC checkpoint (drawn as CAM, Grad-CAM or
Grad-CAM++)."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from mmpretrain.apis import get_model
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised demo models saved as checkpoints."""
    root = tmp_path_factory.mktemp('ckpt')
    paths = {}
    for name in ('saol_demo', 'gapfc_demo'):
        model = get_model(osp.join(REPO, 'configs', f'{name}.py'))
        paths[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   paths[name])
    return paths


def png_size(path):
    with Image.open(path) as image:
        image.load()
        assert image.format == 'PNG'
        return image.size


def test_files_and_folder_with_contact_sheet(tmp_path, checkpoints):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (('a.png', (40, 40, 3)), ('b.jpg', (36, 44, 3))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(
            folder / name)
    (folder / 'notes.txt').write_text('not an image')
    single = tmp_path / 'single.png'
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        single)
    out = tmp_path / 'out'
    written = load_tool('visualize_maps').main([
        'configs/saol_demo.py', checkpoints['saol_demo'], str(folder),
        str(single), '--out-dir', str(out), '--topk', '2',
        '--contact-sheet', 'sheet.png', '--sheet-columns', '2'])
    names = [osp.basename(p) for p in written]
    assert names == ['a.png', 'b.png', 'single.png', 'sheet.png']
    # image + attention + 2 class maps, 200 px panels; 80 px colour bars
    # for the attention's scale and the class maps' shared scale.
    width = 4 * 200 + 2 * 80
    for path in written[:3]:
        assert png_size(path) == (width, 250)
    assert png_size(written[3]) == (2 * (width + 4) + 4, 2 * 254 + 4)
    # A path for the sheet is taken as given.
    sheet = tmp_path / 'elsewhere' / 'sheet.png'
    sheet.parent.mkdir()
    written = load_tool('visualize_maps').main([
        'configs/saol_demo.py', checkpoints['saol_demo'], str(single),
        '--out-dir', str(out), '--contact-sheet', str(sheet)])
    assert written[-1] == str(sheet) and png_size(sheet) == (width + 8, 258)


@pytest.mark.parametrize('config,scale,width', [
    ('gapfc_demo', 'shared', 2 * 200 + 80),    # image, one CAM, colour bar
    ('saol_demo', 'per-map', 3 * 200 + 80)])   # + attention, one bar
def test_split_of_the_config(tmp_path, checkpoints, config, scale, width):
    written = load_tool('visualize_maps').main([
        f'configs/{config}.py', checkpoints[config], '--split', 'val',
        '--num', '3', '--topk', '1', '--box-thr', '0.5', '--scale', scale,
        '--out-dir', str(tmp_path)])
    # named after the data set's image files
    assert [osp.basename(p) for p in written] == [
        '00000.png', '00001.png', '00002.png']
    for path in written:
        assert png_size(path) == (width, 250)


@pytest.mark.parametrize('method', ['gradcam', 'gradcam++'])
def test_gradcam_pictures_of_a_gapfc_model(tmp_path, checkpoints, method):
    # Image files have no label: one map per picture (the top class), on
    # the grad-cam package's [0, 1] scale with its colour bar.
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(
        tmp_path / 'grey.png')
    written = load_tool('visualize_maps').main([
        'configs/gapfc_demo.py', checkpoints['gapfc_demo'],
        str(tmp_path / 'grey.png'), '--map', method, '--topk', '1',
        '--box-thr', '0.5', '--out-dir', str(tmp_path / 'out')])
    assert [osp.basename(p) for p in written] == ['grey.png']
    assert png_size(written[0]) == (2 * 200 + 80, 250)
    with pytest.raises(SystemExit):  # SAOL models draw their own maps
        load_tool('visualize_maps').main([
            'configs/saol_demo.py', checkpoints['saol_demo'],
            str(tmp_path / 'grey.png'), '--map', method,
            '--out-dir', str(tmp_path / 'out')])


def test_inputs_or_split_not_both(checkpoints):
    tool = load_tool('visualize_maps')
    with pytest.raises(SystemExit):
        tool.main(['configs/saol_demo.py', checkpoints['saol_demo'],
                   '--out-dir', 'x'])
    with pytest.raises(SystemExit):
        tool.main(['configs/saol_demo.py', checkpoints['saol_demo'], 'a.png',
                   '--split', 'val', '--out-dir', 'x'])
