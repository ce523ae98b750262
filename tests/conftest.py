"""Shared test fixtures: every test imports mmsaol (registers components)."""
import os.path as osp

import pytest
import torch

import mmsaol  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')

# One intra-op thread: the suite's tensors are tiny, and several test
# processes (distributed runs, tools) share the CI machine's two cores.
torch.set_num_threads(1)


@pytest.fixture
def repo_root() -> str:
    return REPO
