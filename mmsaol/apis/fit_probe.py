"""How well a trained checkpoint fits its training data, and which loss
drives the last backbone stage.

    mmsaol fit-probe CONFIG CHECKPOINT|init [--num 3000]
        [--grad-batches 6] [--cfg-options k=v ...]

Prints top-1 and mean NLL on the first NUM training images (test pipeline,
no augmentation) and test images: a model below another on both splits
fits worse (optimisation), one below only on the test split generalises
worse. Then, over a few training batches (train pipeline and batch
augments, BN in training mode), the gradient norm that each loss term sends
into the output of the backbone's last stage and into that stage's
parameters, and over how many of the map's locations that gradient is
spread (``(sum_l g_l)^2 / sum_l g_l^2`` of the per-location norms, per
image: all of them when every location gets the same). CHECKPOINT ``init``
probes the freshly initialised model. The study's runs keep their
checkpoints under
work_dirs/study/<study>/<variant>/seed<k>/.
"""
from __future__ import annotations

import argparse
import copy
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import mmsaol  # noqa: F401
from mmsaol.apis.cli import add_model_args, user_errors_as_messages
from mmsaol.compat.config import load_config
from mmsaol.deploy.export import load_weights


def build(config: str, checkpoint: str, options: dict | None):
    """The config and the model of ``config`` with the weights of
    ``checkpoint`` (``'init'``: freshly initialised).

    Args:
        config (str): Config file.
        checkpoint (str): Checkpoint file, read by mmsaol's safe loader.
        options (dict, optional): ``--cfg-options`` overrides.
    """
    cfg = load_config(config, options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    if checkpoint == 'init':
        model.init_weights()
        return cfg, model
    # Read as data by the safe loader, values checked, strictly.
    load_weights(model, checkpoint)
    return cfg, model


def split_fit(cfg: Config, model, split: str, num: int) -> tuple:
    """Top-1 (%) and mean NLL on the first ``num`` images of a split."""
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    if split == 'train':  # the training images, without augmentation
        loader_cfg.dataset = copy.deepcopy(cfg.train_dataloader.dataset)
        loader_cfg.dataset.pipeline = cfg.test_dataloader.dataset.pipeline
    loader_cfg.dataset.indices = num
    model.eval()
    correct = total = 0
    nll = 0.0
    with torch.no_grad():
        for data in Runner.build_dataloader(loader_cfg):
            data = model.data_preprocessor(data, False)
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            log_p = torch.log_softmax(model(data['inputs'], mode='tensor'), 1)
            correct += int((log_p.argmax(1) == labels).sum())
            total += len(labels)
            nll -= float(log_p[torch.arange(len(labels)), labels].sum())
    return 100 * correct / total, nll / total


def stage_gradients(cfg: Config, model, batches: int) -> dict:
    """Mean gradient norm of every loss term into the last stage's output
    and parameters, and the number of locations it spreads over, over
    ``batches`` training batches."""
    model.train()
    stage = [m for m in model.backbone.children()
             if isinstance(m, torch.nn.Sequential)][-1]
    saved = {}

    def keep(module, args, output):
        if output.requires_grad:  # not the no-grad un-mixed forward
            output.retain_grad()
            saved['out'] = output

    handle = stage.register_forward_hook(keep)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    sums: dict = {}
    for _, data in zip(range(batches), loader):
        data = model.data_preprocessor(data, True)
        losses = model(**data, mode='loss')
        for name, loss in losses.items():
            if not name.startswith('loss'):
                continue
            model.zero_grad()
            saved['out'].grad = None
            loss.backward(retain_graph=True)
            grad = saved['out'].grad
            params = [p.grad.norm() ** 2 for p in stage.parameters()
                      if p.grad is not None]
            row = sums.setdefault(name, [0.0, 0.0, 0.0])
            row[1] += float(sum(params) ** 0.5 if params else 0) / batches
            if grad is None:
                continue
            row[0] += float(grad.norm()) / batches
            per_location = grad.norm(dim=1).flatten(1)
            spread = per_location.sum(1) ** 2 / (per_location ** 2).sum(
                1).clamp(min=torch.finfo(grad.dtype).tiny)
            row[2] += float(spread.mean()) / batches
    handle.remove()
    return sums


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/fit_probe.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument('--num', type=int, default=3000)
    parser.add_argument('--grad-batches', type=int, default=6)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser


@user_errors_as_messages
def main(argv: Optional[List[str]] = None) -> None:
    """Print the fit on both splits and the gradient of each loss."""
    args = build_parser().parse_args(argv)
    torch.manual_seed(0)
    cfg, model = build(args.config, args.checkpoint, args.cfg_options)
    for split in ('train', 'test'):
        acc, nll = split_fit(cfg, model, split, args.num)
        print(f'{split}: top-1 {acc:.2f}  NLL {nll:.3f}  '
              f'(first {args.num} images, no augmentation)')
    for name, (out, params, spread) in stage_gradients(
            cfg, model, args.grad_batches).items():
        print(f'{name}: |grad| last-stage output {out:.4f}, '
              f'last-stage parameters {params:.4f}, spread over '
              f'{spread:.1f} locations')
