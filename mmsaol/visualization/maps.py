"""Pictures of SAOL's maps (and CAMs): one figure per image, contact sheets.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no
display needed), returned as RGB arrays so the same picture can go to a PNG
file or to an mmengine visualizer backend.

Colour scales (``scale``), each shown by a colour bar in the picture:

- ``'shared'`` (default): the class maps of a picture share one scale, so a
  class at probability 0.02 looks as cold as it is next to one at 0.89.
  SAOL's class maps ``A * Y_c`` are probability per map cell (each sums to
  the class's probability): scale 0 to the largest value drawn. CAMs are
  logits: one scale from the smallest to the largest value drawn. SAOL's
  attention map ``A`` (sums to 1, no class) keeps a scale of its own, 0 to
  its maximum, with its own colour bar that says so.
- ``'per-map'``: every map min-max normalised on its own, 0 to 1 (the map
  the WSOL protocol thresholds; it shows where each map is highest, not how
  high).
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from mmpretrain.structures import DataSample
from PIL import Image
from torch import Tensor

from ..checks import check_choice
from ..evaluation.wsol import (
    boxes_at_thresholds,
    boxes_to_frame,
    frame_scoremap,
    image_map,
    normalize_scoremap,
)
from ..structures import ATTENTION_MAP, CLASS_MAP_LABELS, CLASS_MAPS
from .gradcam import MAP_METHOD

GT_COLOR = 'lime'
PRED_COLOR = 'white'
CMAP = 'jet'
SCALES = ('shared', 'per-map')
#: Width of a colour bar with its tick labels, as a fraction of a panel.
COLORBAR_WIDTH = 0.4
#: Map kinds of :class:`Panel` and the label of their shared colour bar.
SCALE_LABELS = {
    'attention': 'attention A per cell (own scale)',
    'probability': 'class probability per cell',
    'cam': 'CAM logit',
    'gradcam': 'min-max per map (grad-cam package)',
}
#: Panel titles of the grad-cam package's methods.
GRADCAM_TITLES = {'gradcam': 'Grad-CAM', 'gradcam++': 'Grad-CAM++',
                  'layercam': 'Layer-CAM'}
PER_MAP_LABEL = 'min-max per map'


class Panel(NamedTuple):
    """One map of a picture.

    Attributes:
        title (str): ``'attention'``, or the class name and probability.
        heatmap (Tensor): ``(h, w)`` map at feature resolution.
        kind (str): ``'attention'`` (SAOL's ``A``), ``'probability'``
            (SAOL's class map ``A * Y_c``), ``'cam'`` (a CAM, logits) or
            ``'gradcam'`` (a map of the grad-cam package, in ``[0, 1]``).
    """

    title: str
    heatmap: Tensor
    kind: str


def display_image(image: Union[Tensor, np.ndarray],
                  bgr: bool = False) -> np.ndarray:
    """An image as the network received it, ready to draw.

    Args:
        image (Tensor | np.ndarray): ``(C, H, W)`` tensor (a data batch's
            ``inputs`` item, before normalisation) or ``(H, W, C)`` /
            ``(H, W)`` array; 1 or 3 channels.
        bgr (bool): The channels are in BGR order (images read by OpenCV,
            when the data preprocessor has ``to_rgb=True``).

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    if isinstance(image, Tensor):
        image = image.detach().cpu()
        image = image.permute(1, 2, 0).numpy() if image.ndim == 3 \
            else image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if bgr:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))


def _class_name(label: int, classes: Optional[Sequence[str]]) -> str:
    if classes is not None and 0 <= label < len(classes):
        return str(classes[label])
    return str(label)


def sample_panels(sample: DataSample, classes: Optional[Sequence[str]] = None,
                  topk: Optional[int] = None) -> List[Panel]:
    """The maps of a predicted sample, each with a title and its kind.

    Args:
        sample (DataSample): A prediction with ``attention_map`` (SAOL)
            and/or ``class_maps`` + ``class_map_labels`` (SAOL or CAM).
        classes (Sequence[str], optional): Class names.
        topk (int, optional): Class maps to show. Defaults to all attached.

    Returns:
        list[Panel]: the attention map, then the class maps titled
        ``name score``; class maps of a sample with an attention map are
        SAOL's (``'probability'``), maps of ``GradCAMClassifier``
        ``'gradcam'`` (titled with the method), otherwise CAMs (``'cam'``).
    """
    panels = []
    saol = ATTENTION_MAP in sample
    method = sample.metainfo.get(MAP_METHOD)
    kind = 'probability' if saol else 'gradcam' if method else 'cam'
    if saol:
        panels.append(Panel('attention', sample.get(ATTENTION_MAP),
                            'attention'))
    if CLASS_MAPS in sample:
        labels = torch.as_tensor(sample.get(CLASS_MAP_LABELS)).tolist()
        scores = sample.get('pred_score')
        for label, heatmap in list(zip(labels,
                                       sample.get(CLASS_MAPS)))[:topk]:
            title = _class_name(label, classes)
            if method:
                title = f'{GRADCAM_TITLES.get(method, method)} {title}'
            if scores is not None:
                title += f' {float(scores[label]):.2f}'
            panels.append(Panel(title, heatmap, kind))
    if not panels:
        raise ValueError(
            'The sample has no maps: set model.head.with_maps=True (SAOLHead,'
            " or a GAP-FC model with model.head.type='CAMHead' and "
            'model.neck=None).')
    return panels


def _draw_box(ax, box: np.ndarray, color: str, style: str = '-') -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    # Boxes are inclusive pixel ranges (the WSOL protocol's); pixel centres
    # sit on integers.
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1,
                           fill=False, edgecolor=color, linewidth=1.5,
                           linestyle=style))


def _gt_boxes(sample: DataSample, image_shape: Sequence[int]) -> np.ndarray:
    """``gt_bbox`` (``ori_shape`` frame) in the frame of the drawn image."""
    if sample.get('gt_bbox') is None:
        return np.zeros((0, 4))
    boxes = torch.as_tensor(sample.gt_bbox).detach().cpu().numpy()
    height, width = sample.get('ori_shape', image_shape)[:2]
    return boxes_to_frame(boxes, (width, height),
                          (image_shape[1], image_shape[0]))


def _color_ranges(maps: Sequence[np.ndarray], kinds: Sequence[str],
                  scale: str) -> List[Tuple[float, float, str, int]]:
    """``(vmin, vmax, colour bar label, group)`` of every map: maps of one
    group share a scale and a colour bar (see the module's docstring)."""
    if scale == 'per-map':
        return [(0.0, 1.0, PER_MAP_LABEL, 0)] * len(maps)
    ranges = []
    for kind in kinds:
        group = [m for m, k in zip(maps, kinds) if k == kind]
        low = min(float(m.min()) for m in group) if kind == 'cam' else 0.0
        high = max(float(m.max()) for m in group)
        if high <= low:   # constant maps: any range that contains them
            high = low + max(abs(low), 1.0) * 1e-6
        ranges.append((low, high, SCALE_LABELS[kind], kinds.index(kind)))
    return ranges


def render_maps(image: np.ndarray,
                sample: DataSample,
                classes: Optional[Sequence[str]] = None,
                topk: Optional[int] = None,
                title: Optional[str] = None,
                box_thr: Optional[float] = None,
                scale: str = 'shared',
                panel_px: int = 200,
                dpi: int = 100,
                alpha: float = 0.5) -> np.ndarray:
    """One row of panels: the image, then each map over the image, with a
    colour bar for each colour scale.

    Maps are upsampled (bilinear) to the drawn image; ``scale`` sets their
    colour scales (see the module's docstring: by default the class maps
    share one, so their colours compare, and SAOL's attention has its own).
    The class maps' titles give the class and its predicted probability.
    Ground-truth boxes (``gt_bbox``) are drawn in green on every panel.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB image the maps belong to
            (see :func:`display_image`).
        sample (DataSample): The prediction (see :func:`sample_panels`).
        classes (Sequence[str], optional): Class names.
        topk (int, optional): Class maps to draw. Defaults to all attached.
        title (str, optional): Title of the image panel (e.g. file name).
        box_thr (float, optional): Also draw each map's estimated box at this
            threshold, by the WSOL protocol's steps (bicubic resize to the
            drawn image, min-max, 8-bit threshold, largest contour; dashed).
            Defaults to None (no box).
        scale (str): ``'shared'`` (default) or ``'per-map'``.
        panel_px (int): Side of a panel in pixels. Defaults to 200.
        dpi (int): Resolution of the figure. Defaults to 100.
        alpha (float): Opacity of the maps over the image. Defaults to 0.5.

    Returns:
        np.ndarray: ``(round(1.25 * panel_px), n_panels * panel_px +
        n_bars * round(0.4 * panel_px), 3)`` uint8 RGB picture, where
        ``n_bars`` is the number of colour scales (1 or 2).
    """
    check_choice(scale, SCALES, 'scale')
    panels = sample_panels(sample, classes, topk)
    height, width = image.shape[:2]
    gt_boxes = _gt_boxes(sample, (height, width))
    lines = [title] if title else []
    if 'gt_label' in sample:
        gt = int(torch.as_tensor(sample.gt_label).view(-1)[0])
        lines.append(f'GT: {_class_name(gt, classes)}')
    upsampled = [image_map(p.heatmap, (height, width)) for p in panels]
    shown = [normalize_scoremap(m) for m in upsampled] \
        if scale == 'per-map' \
        else upsampled
    ranges = _color_ranges(shown, [p.kind for p in panels], scale)
    # A group's colour bar follows its last panel.
    bar_after = {max(i for i, r in enumerate(ranges) if r[3] == group): group
                 for group in {r[3] for r in ranges}}

    bar_px = round(COLORBAR_WIDTH * panel_px)
    fig_h = round(1.25 * panel_px)
    fig_w = (len(panels) + 1) * panel_px + len(bar_after) * bar_px
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)

    def panel_axes(left_px: int):
        return fig.add_axes((
            (left_px + 0.02 * panel_px) / fig_w, 0.02,
            0.96 * panel_px / fig_w, 0.76))

    left = 0
    axes = [panel_axes(left)]
    axes[0].imshow(image, interpolation='nearest')
    axes[0].set_title('\n'.join(lines) or 'image', fontsize=8)
    left += panel_px
    for i, (panel, heatmap, (low, high, label, _)) in enumerate(
            zip(panels, shown, ranges)):
        ax = panel_axes(left)
        axes.append(ax)
        ax.imshow(image, interpolation='nearest')
        ax.imshow(heatmap, cmap=CMAP, alpha=alpha, vmin=low, vmax=high,
                  interpolation='nearest')
        ax.set_title(panel.title, fontsize=8)
        if box_thr is not None:
            scoremap = frame_scoremap(panel.heatmap, (width, height))
            _draw_box(ax, boxes_at_thresholds(scoremap, [box_thr])[0][0],
                      PRED_COLOR, '--')
        left += panel_px
        if i in bar_after:
            bar = fig.add_axes(((left + 0.03 * panel_px) / fig_w, 0.06,
                                0.06 * panel_px / fig_w, 0.68))
            colorbar = fig.colorbar(
                ScalarMappable(Normalize(low, high), CMAP), cax=bar)
            colorbar.ax.tick_params(labelsize=6)
            colorbar.set_label(label, fontsize=7)
            left += bar_px
    for ax in axes:
        for box in gt_boxes:
            _draw_box(ax, box, GT_COLOR)
        ax.set_axis_off()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def contact_sheet(pictures: Sequence[np.ndarray], columns: int = 2,
                  pad: int = 4) -> np.ndarray:
    """Tile pictures row by row on a white sheet.

    Args:
        pictures (Sequence[np.ndarray]): ``(H_i, W_i, 3)`` uint8 pictures.
        columns (int): Pictures per row. Defaults to 2.
        pad (int): White margin around each picture, in pixels.

    Returns:
        np.ndarray: ``(rows * (H + pad) + pad, columns * (W + pad) + pad,
        3)`` uint8, with ``H, W`` the largest picture sizes.
    """
    if not pictures:
        raise ValueError('contact_sheet needs at least one picture.')
    if columns < 1:
        raise ValueError(f'columns must be >= 1, got {columns}.')
    columns = min(columns, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    cell_h = max(p.shape[0] for p in pictures) + pad
    cell_w = max(p.shape[1] for p in pictures) + pad
    sheet = np.full((rows * cell_h + pad, columns * cell_w + pad, 3), 255,
                    dtype=np.uint8)
    for i, picture in enumerate(pictures):
        top = (i // columns) * cell_h + pad
        left = (i % columns) * cell_w + pad
        sheet[top:top + picture.shape[0],
              left:left + picture.shape[1]] = picture
    return sheet


def save_png(picture: np.ndarray, path: str) -> None:
    """Write an RGB uint8 array as a PNG file."""
    Image.fromarray(picture).save(path, format='PNG')
