"""Shared test fixtures: every test imports mmsaol (registers components)."""
import os
import os.path as osp

import pytest
import torch

import mmsaol  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def repo_root() -> str:
    return REPO
