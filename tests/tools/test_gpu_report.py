"""tools/gpu_report.sh on a CPU host: its arguments, the plan it prints
with --dry-run (benchmark arguments checked by the benchmark's own parser)
and its soft exit without CUDA."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'gpu_report.sh')


def report(*args, **env):
    return subprocess.run(
        ['bash', SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, PYTHON=sys.executable, **env))


def test_help():
    proc = report('--help')
    assert proc.returncode == 0
    assert '--dry-run' in proc.stdout and 'BATCH_SIZE' in proc.stdout


@pytest.mark.parametrize('args,env,words', [
    (['--bogus'], {}, 'unknown option --bogus'),
    (['out', '0'], {}, "BATCH_SIZE must be a positive integer, got '0'"),
    (['out', '8', 'extra'], {}, 'takes OUT_DIR and BATCH_SIZE only'),
    ([], {'ITERS': 'x'}, "ITERS must be a positive integer, got 'x'"),
])
def test_bad_arguments_are_one_line(args, env, words):
    proc = report(*args, **env)
    assert proc.returncode == 2
    assert words in proc.stderr and 'Traceback' not in proc.stderr


def test_dry_run_prints_every_step_and_checks_benchmark_arguments(
        tmp_path):
    out = tmp_path / 'report'
    proc = report('--dry-run', str(out), '16')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [line for line in proc.stdout.splitlines()
             if line.startswith('+ [')]
    names = [line.split(']')[0][3:] for line in steps]
    configs = ('resnet50_saol_imagenet', 'pyramidnet200_saol_cifar100')
    assert names == ['tests'] + [
        f'bench_{c}_{mode}{compiled}' for c in configs
        for mode in ('fp32', 'amp') for compiled in ('', '_compile')]
    assert 'tests/models/test_compile.py' in steps[0]
    for line in steps[1:]:
        assert '--batch-size 16' in line and '--device cuda' in line
        assert ('--input-size 224' in line) == ('resnet50' in line)
        assert ('--amp' in line) == ('_amp' in line)
        assert ('--compile' in line) == ('_compile]' in line)
    assert 'benchmark arguments: ok' in proc.stdout
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA host')
def test_without_cuda_it_says_so_and_succeeds(tmp_path):
    out = tmp_path / 'report'
    proc = report(str(out))
    assert proc.returncode == 0
    assert 'no CUDA device on this host: nothing measured' in proc.stderr
    assert not out.exists()
