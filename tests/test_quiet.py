"""Importing mmsaol (what every tool does first) silences warnings that are
not the user's business: mmcv-lite's about an mmcv op mmsaol never uses,
setuptools' about mmengine importing pkg_resources."""
import subprocess
import sys

import pytest

# Code that makes mmcv-lite and setuptools warn, and parts of the warnings.
TRIGGER = ("import mmpretrain.models; from mmengine.utils import "
           "is_installed; is_installed('mmpretrain')")
WARNINGS = ('MultiScaleDeformableAttention', 'pkg_resources is deprecated')


def stderr_of(code: str) -> str:
    return subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        timeout=300, check=True).stderr


def test_warnings_are_silenced():
    issued = [w for w in WARNINGS if w in stderr_of(TRIGGER)]
    if not issued:
        pytest.skip('the installed mmcv and setuptools do not warn')
    stderr = stderr_of(f'import mmsaol; {TRIGGER}')
    for warning in issued:
        assert warning not in stderr, stderr
