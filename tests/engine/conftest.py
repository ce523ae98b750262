"""A tiny, real SAOL training setup for the engine hook tests.

SAOLClassifier (ResNet_CIFAR-18, 8 channels wide, SAOLHead on stages 2-4
with self-supervision and distillation, GeometryCutMix) on mmpretrain's
CustomDataset of 16x16 PNG files: two classes, 8 training images, batch 4,
so an epoch is 2 iterations.
"""
import itertools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from PIL import Image

import mmsaol.engine  # noqa: F401  (registers the hooks)

_names = itertools.count()


@pytest.fixture(scope='session')
def image_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` and ``val/`` folders of two classes: a bright square in
    the top-left or in the bottom-right corner, on noise."""
    root = tmp_path_factory.mktemp('engine_images')
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        for cls, corner in (('tl', slice(0, 8)), ('br', slice(8, 16))):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
                pixels[corner, corner] = 255
                Image.fromarray(pixels).save(folder / f'{i}.png')
    return root


def tiny_cfg(data: Path, work_dir: Path, max_epochs: int = 2) -> dict:
    """The runner config (plain dict, mmengine Runner arguments)."""

    def loader(split: str, shuffle: bool) -> dict:
        return dict(
            batch_size=4,
            num_workers=0,
            dataset=dict(type='CustomDataset', data_root=str(data / split),
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=shuffle),
            collate_fn=dict(type='default_collate'))

    return dict(
        model=dict(
            type='SAOLClassifier',
            data_preprocessor=dict(num_classes=2, mean=[127.5] * 3,
                                   std=[127.5] * 3),
            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                          base_channels=8, out_indices=(1, 2, 3)),
            neck=None,
            head=dict(type='SAOLHead', num_classes=2,
                      in_channels=(16, 32, 64), channels=8,
                      loss=dict(type='CrossEntropyLoss', use_soft=True),
                      self_supervision=dict(target='self'),
                      distillation=dict()),
            train_cfg=dict(augments=dict(type='GeometryCutMix', alpha=1.0))),
        work_dir=str(work_dir),
        experiment_name=f'mmsaol_engine_{next(_names)}',
        train_dataloader=loader('train', True),
        val_dataloader=loader('val', False),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05,
                                          momentum=0.9)),
        param_scheduler=[dict(type='MultiStepLR', by_epoch=True,
                              milestones=[1])],
        default_scope='mmpretrain',
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                            save_best='auto'),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='NonFiniteLossHook')],
        randomness=dict(seed=0),
        log_level='WARNING',
    )


@pytest.fixture(scope='session')
def make_runner(image_folders: Path) -> Callable[..., Runner]:
    """``make_runner(work_dir, max_epochs=2, hooks=(), **options)``: a
    Runner of the tiny config; ``options`` are dotted config keys (as
    --cfg-options), ``hooks`` extra Hook instances to register."""

    def make(work_dir: Path, max_epochs: int = 2, hooks: Sequence[Hook] = (),
             **options) -> Runner:
        cfg = Config(tiny_cfg(image_folders, work_dir, max_epochs))
        cfg.merge_from_dict(options)
        runner = Runner.from_cfg(cfg)
        for hook in hooks:
            runner.register_hook(hook)
        return runner

    return make
