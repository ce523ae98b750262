"""``tools/visualize_maps.py`` (``mmsaol maps``): pictures of SAOL's maps
(or a GAP-FC model's CAMs) for image files, folders or a split of the
config, with a contact sheet. The model is the config's with maps switched
on (:func:`build_maps_model`); the drawing itself is
:func:`mmsaol.visualization.render_maps`.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.utils import ProgressBar
from mmpretrain.apis import ImageClassificationInferencer, get_model
from torch.utils.data import DataLoader

from mmsaol.apis.cli import add_model_args, user_errors_as_messages
from mmsaol.compat.config import build_split, load_config
from mmsaol.deploy.runtime import check_image_file
from mmsaol.model_configs import maps_config
from mmsaol.visualization.gradcam import GRADCAM_METHODS, gradcam_config
from mmsaol.visualization.maps import (
    SCALES,
    contact_sheet,
    display_image,
    render_maps,
    save_png,
)

#: Map sources of the pictures: the model's own maps (SAOL's attention and
#: class maps, or a GAP-FC model's CAMs) or the grad-cam package's.
MAP_SOURCES = ('model', *GRADCAM_METHODS)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')

# Image names and the collated batch ({'inputs', 'data_samples'}).
NamedBatch = Tuple[List[str], dict]


def build_maps_model(config: Union[str, Config],
                     checkpoint: Optional[str] = None,
                     topk: Union[int, str, None] = None,
                     device: str = 'cpu',
                     cfg_options: Optional[dict] = None,
                     map_source: str = 'model') -> torch.nn.Module:
    """Build a model from a config and checkpoint, with maps switched on
    (see :func:`~mmsaol.model_configs.maps_config`), in evaluation mode;
    with ``map_source`` ``'gradcam'``, ``'gradcam++'`` or ``'layercam'`` a
    stock classifier draws the grad-cam package's maps instead
    (:func:`~mmsaol.visualization.gradcam.gradcam_config`).

    The returned model carries ``_config`` (the modified config) and
    ``_dataset_meta`` (the classes from the checkpoint, else from the test
    data set), as mmpretrain's ``get_model`` sets them, so it can be handed
    to ``ImageClassificationInferencer``.
    """
    cfg = load_config(config, cfg_options)
    if map_source in GRADCAM_METHODS:
        cfg = gradcam_config(cfg, map_source,
                             None if topk == 'all' else topk)
    elif map_source == 'model':
        cfg = maps_config(cfg, topk)
    else:
        raise ValueError(f'map_source must be one of {MAP_SOURCES}, got '
                         f'{map_source!r}.')
    return get_model(cfg, checkpoint, device=device)


def add_picture_flags(parser: argparse.ArgumentParser) -> None:
    """``--scale`` and ``--box-thr``: how the maps of a picture are drawn
    (the flags of every tool that draws them)."""
    parser.add_argument(
        '--scale', choices=SCALES, default='shared',
        help="colour scales: 'shared' (default: the class maps of a "
        "picture share one probability scale; SAOL's attention has its "
        "own) or 'per-map' (each map min-max normalised)")
    parser.add_argument('--box-thr', type=float, default=None,
                        help="also draw each map's box at this threshold")


def list_images(inputs: Sequence[str]) -> List[str]:
    """Image files named directly, plus the images inside named folders
    (not recursive, sorted by name)."""
    paths = []
    for item in inputs:
        if osp.isdir(item):
            paths.extend(osp.join(item, name) for name in sorted(os.listdir(
                item)) if name.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f'Input {item!r} is neither an image '
                                    'file nor a folder.')
    if not paths:
        raise ValueError(f'No image found in {list(inputs)} (extensions '
                         f'{IMAGE_EXTENSIONS}).')
    return paths


def file_batches(model, paths: Sequence[str]) -> Iterator[NamedBatch]:
    """``(names, batch)`` for image files, through mmpretrain's
    ``ImageClassificationInferencer`` (reads the file, runs the config's
    test pipeline). One image per batch: files may differ in size, and the
    inferencer stacks a batch. Empty files and headers claiming a huge
    image are refused before anything is decoded."""
    for path in paths:
        check_image_file(path)
    inferencer = ImageClassificationInferencer(model)
    batches = inferencer.preprocess(list(paths), batch_size=1)
    for path, batch in zip(paths, batches):
        yield [osp.splitext(osp.basename(path))[0]], batch


def split_batches(dataset, split: str,
                  batch_size: int) -> Iterator[NamedBatch]:
    """``(names, batch)`` for a data set: names from ``img_path`` when the
    samples have one, else ``<split>_<index>``."""
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=pseudo_collate):
        names = []
        for sample in batch['data_samples']:
            if sample.get('img_path'):
                names.append(osp.splitext(osp.basename(sample.img_path))[0])
            else:
                names.append(f'{split}_{int(sample.sample_idx):05d}')
        yield names, batch


def _unique(name: str, used: set) -> str:
    candidate, i = name, 1
    while candidate in used:
        candidate, i = f'{name}_{i}', i + 1
    used.add(candidate)
    return candidate


def write_map_pictures(model,
                       batches: Iterable[NamedBatch],
                       total: int,
                       out_dir: str,
                       topk: Optional[int] = None,
                       box_thr: Optional[float] = None,
                       scale: str = 'shared',
                       sheet: Optional[str] = None,
                       sheet_columns: int = 2,
                       sheet_max: int = 64,
                       progress: bool = True) -> List[str]:
    """Run the model on every batch and write one PNG per image.

    Args:
        model: A model with maps switched on (:func:`build_maps_model`).
        batches (Iterable): ``(names, batch)`` pairs (:func:`file_batches`,
            :func:`split_batches`).
        total (int): Number of images, for the progress bar.
        out_dir (str): Folder for ``<name>.png`` (created).
        topk (int, optional): Class maps per picture.
        box_thr (float, optional): Draw each map's box at this threshold.
        scale (str): Colour scales: ``'shared'`` (default; the class maps
            share one, SAOL's attention keeps its own) or ``'per-map'``
            (each map min-max normalised). Each has a colour bar.
        sheet (str, optional): Contact sheet of the first ``sheet_max``
            pictures: a file name (written in ``out_dir``) or a path.
        sheet_columns (int): Pictures per row of the sheet.
        sheet_max (int): Most pictures on the sheet. Defaults to 64.
        progress (bool): Show a progress bar.

    Returns:
        list[str]: the written files, the sheet last.
    """
    os.makedirs(out_dir, exist_ok=True)
    classes = model._dataset_meta.get('classes') \
        if getattr(model, '_dataset_meta', None) else None
    bgr = bool(getattr(model.data_preprocessor, 'to_rgb', False))
    bar = ProgressBar(total) if progress else None
    written, kept, used = [], [], set()
    for names, batch in batches:
        with torch.no_grad():
            samples = model.test_step(batch)
        for name, image, sample in zip(names, batch['inputs'], samples):
            picture = render_maps(display_image(image, bgr), sample, classes,
                                  topk=topk, title=name, box_thr=box_thr,
                                  scale=scale)
            path = osp.join(out_dir, _unique(name, used) + '.png')
            save_png(picture, path)
            written.append(path)
            if len(kept) < sheet_max:
                kept.append(picture)
        if bar is not None:
            bar.update(len(names))
    if sheet:
        # A bare file name goes into out_dir, a path is taken as given.
        path = sheet if osp.dirname(sheet) else osp.join(out_dir, sheet)
        save_png(contact_sheet(kept, sheet_columns), path)
        written.append(path)
    return written


def visualize_maps(config: Union[str, Config],
                   checkpoint: Optional[str],
                   out_dir: str,
                   inputs: Sequence[str] = (),
                   split: Optional[str] = None,
                   num: Optional[int] = None,
                   topk: int = 2,
                   batch_size: int = 8,
                   device: str = 'cpu',
                   cfg_options: Optional[dict] = None,
                   map_source: str = 'model',
                   **kwargs) -> List[str]:
    """Pictures of the maps of image files or of a data split.

    Args:
        config (str | Config): Model config (SAOL, or GAP-FC drawn as CAM).
        checkpoint (str, optional): Weights.
        out_dir (str): Output folder.
        inputs (Sequence[str]): Image files and/or folders.
        split (str, optional): Or ``'val'``/``'test'``/``'train'``: the
            config's data loader of that split.
        num (int, optional): With ``split``: the first ``num`` images.
        topk (int): Class maps per picture. Defaults to 2.
        batch_size (int): Batch size for a split. Defaults to 8.
        device (str): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config.
        map_source (str): ``'model'`` (default: the model's own maps) or
            ``'gradcam'``, ``'gradcam++'``, ``'layercam'``.
        **kwargs: ``box_thr``, ``scale``, ``sheet``, ``sheet_columns``,
            ``sheet_max``, ``progress`` of :func:`write_map_pictures`.

    Returns:
        list[str]: the written files.
    """
    if bool(inputs) == bool(split):
        raise ValueError('Give either image files/folders or a split '
                         "(e.g. split='val'), not both and not neither.")
    model = build_maps_model(config, checkpoint, topk=topk, device=device,
                             cfg_options=cfg_options, map_source=map_source)
    if split:
        dataset = build_split(model._config, split, num)
        batches, total = split_batches(dataset, split, batch_size), len(
            dataset)
    else:
        paths = list_images(inputs)
        batches, total = file_batches(model, paths), len(paths)
    return write_map_pictures(model, batches, total, out_dir, topk=topk,
                              **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/visualize_maps.py``."""
    parser = argparse.ArgumentParser(
        description="Draw SAOL's attention and class maps (a GAP-FC model's "
        'CAMs) of image files, folders or a split of the config: one PNG '
        'per image (the image, the attention map, the top-k class maps '
        'with class names and probabilities, colour bars), ground-truth '
        'boxes in green when the data set has them.')
    add_model_args(parser)
    parser.add_argument('inputs', nargs='*', help='image files or folders')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--split', choices=('val', 'test', 'train'),
                        help="draw the config's data split instead")
    parser.add_argument('--num', type=int, default=None,
                        help='with --split: the first NUM images')
    parser.add_argument('--topk', type=int, default=2,
                        help='class maps per image (default 2)')
    parser.add_argument(
        '--map', choices=MAP_SOURCES, default='model', dest='map_source',
        help="maps to draw: 'model' (default: SAOL's attention and class "
        "maps, or a GAP-FC model's CAMs), or 'gradcam', 'gradcam++', "
        "'layercam' (grad-cam package, any stock ImageClassifier)")
    add_picture_flags(parser)
    parser.add_argument('--contact-sheet', default=None, metavar='NAME.png',
                        help='also write a contact sheet of the pictures '
                        '(a bare name goes into --out-dir)')
    parser.add_argument('--sheet-columns', type=int, default=2)
    parser.add_argument('--sheet-max', type=int, default=64,
                        help='most pictures on the contact sheet')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='batch size with --split')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser


@user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> List[str]:
    """Write the pictures; return the files written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.split):
        parser.error('give image files/folders or --split, not both')
    return visualize_maps(
        args.config, args.checkpoint, args.out_dir,
        inputs=args.inputs, split=args.split, num=args.num, topk=args.topk,
        batch_size=args.batch_size, device=args.device,
        cfg_options=args.cfg_options, map_source=args.map_source,
        box_thr=args.box_thr,
        scale=args.scale, sheet=args.contact_sheet,
        sheet_columns=args.sheet_columns, sheet_max=args.sheet_max)
