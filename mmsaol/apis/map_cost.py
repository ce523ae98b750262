"""What maps cost: images per second to produce each map source on the same
backbone and input, as ratios to the plain forward (``mmsaol benchmark
--maps``).

Map sources, each from the model that produces it:

- ``'attention'``, ``'class'``: SAOL's attention map and its class map of
  the top class (Kim, Baek, Kim, CVPR 2020), attached by the SAOL head in
  its own forward (one pass gives both: one row);
- ``'cam'``: the class activation map of the top class of the GAP-FC twin
  (same backbone; ``CAMHead``);
- ``'gradcam'``, ``'gradcam++'``, ``'layercam'``: the grad-cam package's
  maps of the top class of the GAP-FC twin (a forward and a backward pass,
  :class:`~mmsaol.visualization.gradcam.GradCAMClassifier`).

Each is timed as the model's ``test_step`` on unlabelled batches (so a
Grad-CAM map is the predicted class's, as a user draws it) and compared
with the plain ``test_step`` of its model without maps: SAOL's for SAOL's
maps, the GAP-FC twin's for the rest; both plain forwards are rows too, so
the two models compare as well.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample
from torch import nn

from mmsaol.apis.benchmark_measure import (
    build_quietly,
    interleaved,
    markdown_table,
    measure,
    throughput,
)
from mmsaol.checks import check_choice
from mmsaol.model_configs import gapfc_twin, maps_config
from mmsaol.visualization.gradcam import GRADCAM_METHODS, gradcam_config

#: Map sources ``--maps`` can time.
MAP_COST_SOURCES = ('attention', 'class', 'cam', *GRADCAM_METHODS)
#: Row names of the plain forwards the ratios refer to.
SAOL_FORWARD, GAPFC_FORWARD = 'SAOL forward', 'GAP-FC forward'
#: SAOL's head attaches its attention and class maps in one forward: one
#: row for both.
SAOL_MAPS = 'SAOL attention A + class map A·Y'
ROW_NAMES = {'attention': SAOL_MAPS, 'class': SAOL_MAPS,
             'cam': 'CAM', 'gradcam': 'Grad-CAM', 'gradcam++': 'Grad-CAM++',
             'layercam': 'Layer-CAM'}


def map_cost_configs(saol_model: dict, sources: Sequence[str]
                     ) -> Dict[str, Tuple[dict, str]]:
    """The model config of every row, and the row of its plain forward.

    Args:
        saol_model (dict): A SAOL classifier config (``model``).
        sources (Sequence[str]): Map sources (:data:`MAP_COST_SOURCES`).

    Returns:
        dict: row name -> ``(model config, plain-forward row name)``, the
        two plain forwards first.
    """
    for source in sources:
        check_choice(source, MAP_COST_SOURCES, '--maps source')
    gapfc = gapfc_twin(copy.deepcopy(saol_model))
    rows = {SAOL_FORWARD: (copy.deepcopy(saol_model), SAOL_FORWARD),
            GAPFC_FORWARD: (gapfc, GAPFC_FORWARD)}
    for source in sources:
        if source in ('attention', 'class'):
            model = maps_config(Config(dict(model=saol_model)), topk=1).model
            base = SAOL_FORWARD
        elif source == 'cam':
            model = maps_config(Config(dict(model=gapfc)), topk=1).model
            base = GAPFC_FORWARD
        else:
            model = gradcam_config(Config(dict(model=gapfc)), source,
                                   topk=1).model
            base = GAPFC_FORWARD
        rows[ROW_NAMES[source]] = (model.to_dict() if hasattr(
            model, 'to_dict') else dict(model), base)
    return rows


def map_cost_step(model: nn.Module, batch_size: int,
                  input_size: Tuple[int, int], device: str,
                  seed: int = 0) -> Callable[[], object]:
    """One timed call: ``model.test_step`` on a fixed unlabelled batch of
    random uint8 images (the same images for every row with the same seed).

    Args:
        model (nn.Module): A classifier on ``device``, in eval mode.
        batch_size (int): Images per batch.
        input_size (Tuple[int, int]): Height and width.
        device (str): Where the images go (the preprocessor moves them).
        seed (int): Seed of the images.

    Returns:
        Callable: runs one batch, returns its samples.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, 3, *input_size),
                           dtype=torch.uint8, generator=generator)

    def step():
        batch = dict(inputs=images,
                     data_samples=[DataSample() for _ in range(batch_size)])
        with torch.no_grad():
            return model.test_step(batch)
    return step


def map_cost_table(images_per_s: Dict[str, float],
                   bases: Dict[str, str]) -> List[List[str]]:
    """Rows ``[row, images/s, ratio to its plain forward, ratio to SAOL's
    plain forward]``.

    Args:
        images_per_s (dict): Throughput of every row.
        bases (dict): row -> its plain-forward row.

    Returns:
        list[list[str]]: formatted cells.
    """
    saol = images_per_s.get(SAOL_FORWARD)
    rows = []
    for name, value in images_per_s.items():
        base = images_per_s[bases[name]]
        rows.append([name, f'{value:.1f}', f'{value / base:.3f}',
                     '—' if saol is None else f'{value / saol:.3f}'])
    return rows


def run_map_costs(saol_model: dict, sources: Sequence[str], batch_size: int,
                  input_size: Tuple[int, int], device: str, warmup: int,
                  iters: int, repeats: int, clock: str = 'wall',
                  seed: int = 0) -> dict:
    """Images/s of every map source and of the plain forwards, timed by the
    benchmark's loop (:func:`~mmsaol.apis.benchmark_measure.measure`,
    ``repeats`` timings of ``iters`` batches in rotated order, the median).

    Args:
        saol_model (dict): The SAOL classifier config.
        sources (Sequence[str]): Map sources (:data:`MAP_COST_SOURCES`).
        batch_size (int): Images per batch.
        input_size (Tuple[int, int]): Height and width.
        device (str): ``'cpu'`` or ``'cuda[:i]'``.
        warmup (int): Untimed batches per row first.
        iters (int): Batches per timing.
        repeats (int): Timings per row.
        clock (str): ``'wall'`` or ``'process'``.
        seed (int): Seed of the weights and images.

    Returns:
        dict: ``images_per_s`` and ``ratio`` (to the row's plain forward)
        per row, and the markdown ``table``.
    """
    rows = map_cost_configs(saol_model, sources)
    steps, bases = {}, {}
    for name, (model_cfg, base) in rows.items():
        torch.manual_seed(seed)
        # Building changes a config (batch augments): build from a copy.
        model = build_quietly(copy.deepcopy(model_cfg)).to(device).eval()
        steps[name] = map_cost_step(model, batch_size, input_size, device,
                                    seed)
        bases[name] = base
        for _ in range(warmup):
            steps[name]()
    runs = interleaved({name: (lambda step=step: measure(step, iters, clock))
                        for name, step in steps.items()}, repeats)
    images_per_s = {name: throughput(runs[name], batch_size)[1]
                    for name in steps}
    cells = map_cost_table(images_per_s, bases)
    return dict(
        images_per_s=images_per_s,
        ratio={name: images_per_s[name] / images_per_s[bases[name]]
               for name in steps},
        table=markdown_table(['map source', 'images/s',
                              'vs its plain forward', 'vs SAOL forward'],
                             cells))
