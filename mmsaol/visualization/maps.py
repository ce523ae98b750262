"""Pictures of SAOL's maps (and CAMs): one figure per image, contact sheets.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no
display needed), returned as RGB arrays so the same picture can go to a PNG
file or to an mmengine visualizer backend.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from mmpretrain.structures import DataSample
from PIL import Image
from torch import Tensor

from ..evaluation.wsol import (
    boxes_from_map,
    image_map,
    normalize_map,
    scale_boxes,
)

GT_COLOR = 'lime'
PRED_COLOR = 'white'


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
                  topk: Optional[int] = None) -> List[Tuple[str, Tensor]]:
    """The maps of a predicted sample, each with a title.

    Args:
        sample (DataSample): A prediction with ``attention_map`` (SAOL)
            and/or ``class_maps`` + ``class_map_labels`` (SAOL or CAM).
        classes (Sequence[str], optional): Class names.
        topk (int, optional): Class maps to show. Defaults to all attached.

    Returns:
        list[tuple[str, Tensor]]: ``(title, (h, w) map)`` pairs: the
        attention map, then the class maps titled ``name score``.
    """
    panels = []
    if 'attention_map' in sample:
        panels.append(('attention', sample.attention_map))
    if 'class_maps' in sample:
        labels = torch.as_tensor(sample.class_map_labels).tolist()
        scores = sample.get('pred_score')
        for label, heatmap in list(zip(labels, sample.class_maps))[:topk]:
            title = _class_name(label, classes)
            if scores is not None:
                title += f' {float(scores[label]):.2f}'
            panels.append((title, heatmap))
    if not panels:
        raise ValueError(
            'The sample has no maps: set model.head.with_maps=True (SAOLHead,'
            " or a GAP-FC model with model.head.type='CAMHead' and "
            'model.neck=None).')
    return panels


def _draw_box(ax, box: np.ndarray, color: str, style: str = '-') -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    # Boxes are half-open pixel ranges; pixel centres sit on integers.
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1,
                           fill=False, edgecolor=color, linewidth=1.5,
                           linestyle=style))


def _gt_boxes(sample: DataSample, image_shape: Sequence[int]) -> np.ndarray:
    """``gt_bbox`` (``ori_shape`` frame) in the frame of the drawn image."""
    if sample.get('gt_bbox') is None:
        return np.zeros((0, 4))
    boxes = torch.as_tensor(sample.gt_bbox).detach().cpu().numpy()
    return scale_boxes(boxes.reshape(-1, 4),
                       sample.get('ori_shape', image_shape), image_shape)


def render_maps(image: np.ndarray,
                sample: DataSample,
                classes: Optional[Sequence[str]] = None,
                topk: Optional[int] = None,
                title: Optional[str] = None,
                box_thr: Optional[float] = None,
                panel_px: int = 200,
                dpi: int = 100,
                alpha: float = 0.5) -> np.ndarray:
    """One row of panels: the image, then each map over the image.

    Maps are upsampled (bilinear) to the drawn image and min-max normalised
    per panel (the picture the WSOL protocol thresholds); the class maps'
    titles give the class and its predicted probability. Ground-truth boxes
    (``gt_bbox``) are drawn in green on every panel.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB image the maps belong to
            (see :func:`display_image`).
        sample (DataSample): The prediction (see :func:`sample_panels`).
        classes (Sequence[str], optional): Class names.
        topk (int, optional): Class maps to draw. Defaults to all attached.
        title (str, optional): Title of the image panel (e.g. file name).
        box_thr (float, optional): Also draw each map's estimated box at this
            threshold (dashed). Defaults to None (no box).
        panel_px (int): Side of a panel in pixels. Defaults to 200.
        dpi (int): Resolution of the figure. Defaults to 100.
        alpha (float): Opacity of the maps over the image. Defaults to 0.5.

    Returns:
        np.ndarray: ``(round(1.25 * panel_px), n_panels * panel_px, 3)``
        uint8 RGB picture.
    """
    panels = sample_panels(sample, classes, topk)
    height, width = image.shape[:2]
    gt_boxes = _gt_boxes(sample, (height, width))
    lines = [title] if title else []
    if 'gt_label' in sample:
        gt = int(torch.as_tensor(sample.gt_label).view(-1)[0])
        lines.append(f'GT: {_class_name(gt, classes)}')

    n = len(panels) + 1
    fig = Figure(figsize=(n * panel_px / dpi, 1.25 * panel_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.8,
                        wspace=0.04)
    axes = fig.subplots(1, n, squeeze=False)[0]
    axes[0].imshow(image, interpolation='nearest')
    axes[0].set_title('\n'.join(lines) or 'image', fontsize=8)
    for ax, (name, heatmap) in zip(axes[1:], panels):
        upsampled = image_map(heatmap, (height, width))
        ax.imshow(image, interpolation='nearest')
        ax.imshow(normalize_map(upsampled), cmap='jet', alpha=alpha, vmin=0,
                  vmax=1, interpolation='nearest')
        ax.set_title(name, fontsize=8)
        if box_thr is not None:
            _draw_box(ax, boxes_from_map(upsampled, [box_thr])[0],
                      PRED_COLOR, '--')
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
