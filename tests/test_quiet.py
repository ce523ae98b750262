"""Importing mmsaol (what every tool does first) silences mmcv-lite's
warning about an mmcv op mmsaol never uses."""
import subprocess
import sys

import pytest

WARNING = 'MultiScaleDeformableAttention'


def import_stderr(module: str) -> str:
    return subprocess.run(
        [sys.executable, '-c', f'import {module}'], capture_output=True,
        text=True, timeout=300, check=True).stderr


def test_mmcv_lite_import_warning_is_silenced():
    if WARNING not in import_stderr('mmpretrain.models'):
        pytest.skip('this mmcv does not warn (full mmcv is installed)')
    stderr = import_stderr('mmsaol')
    assert WARNING not in stderr, stderr
