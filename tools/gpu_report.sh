#!/usr/bin/env bash
# mmsaol's GPU checks and speed tables in one short run on one GPU:
#  1. the CUDA tests: fp16/bf16 AMP numerics and an AMP training run,
#     compiled (Inductor/Triton) SAOL training against eager, the CUDA
#     benchmark, NCCL + SyncBN runs when 2+ GPUs are visible;
#  2. benchmark tables of ResNet-50 at 224 px and PyramidNet-200 at 32 px:
#     every SAOL variant in float32 and with --amp, and compiled against
#     eager training (--compile) for the variants in COMPILE_VARIANTS.
# Each step writes OUT_DIR/<step>.md (and .json); a failed step does not stop
# the others; OUT_DIR/summary.md lists them and the exit status is 1 if any
# failed. On a host without CUDA it says so and exits 0 (nothing measured).
#
#   bash tools/gpu_report.sh [--dry-run] [--no-tests] [--no-bench] [OUT_DIR] [BATCH_SIZE]
#
#   --dry-run   print the steps and check the benchmark arguments; run nothing
#   --no-tests  skip step 1        --no-bench  skip step 2
#   OUT_DIR     default work_dirs/gpu_report;  BATCH_SIZE  default 64
# Environment: PYTHON (default python), ITERS (20), REPEATS (5),
# COMPILE_VARIANTS ("gapfc saol_all").
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ITERS=${ITERS:-20}
REPEATS=${REPEATS:-5}
COMPILE_VARIANTS=${COMPILE_VARIANTS:-gapfc saol_all}

die() { echo "gpu_report.sh: $*" >&2; exit 2; }
DRY=0; TESTS=1; BENCH=1; POSITIONAL=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --dry-run) DRY=1 ;;
        --no-tests) TESTS=0 ;;
        --no-bench) BENCH=0 ;;
        --) shift; POSITIONAL+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) POSITIONAL+=("$1") ;;
    esac
    shift
done
[ ${#POSITIONAL[@]} -le 2 ] || die "takes OUT_DIR and BATCH_SIZE only, got: ${POSITIONAL[*]}"
OUT=${POSITIONAL[0]:-work_dirs/gpu_report}
BATCH=${POSITIONAL[1]:-64}
positive() {
    case "$2" in
        ''|*[!0-9]*|0) die "$1 must be a positive integer, got '$2'" ;;
    esac
}
positive BATCH_SIZE "$BATCH"; positive ITERS "$ITERS"; positive REPEATS "$REPEATS"

if [ "$DRY" = 0 ]; then
    device=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0) + ',', torch.cuda.device_count(), 'GPU(s), torch', torch.__version__) if torch.cuda.is_available() else print('none')") \
        || die "$PYTHON cannot import torch: activate the environment mmsaol is installed in, or set PYTHON"
    if [ "$device" = none ]; then
        echo "gpu_report.sh: no CUDA device on this host: nothing measured (the CPU checks are the plain test suite)." >&2
        exit 0
    fi
    mkdir -p "$OUT" || die "cannot create OUT_DIR $OUT"
    echo "$device" | tee "$OUT/device.txt"
    echo "| step | status |" > "$OUT/summary.md"
    echo "|---|---|" >> "$OUT/summary.md"
fi

FAILED=0
BENCH_ARGS=()  # --dry-run: each benchmark command line, checked at the end
# step NAME CMD...: run CMD with its output in OUT/NAME.md (--dry-run: print
# it).
step() {
    local name=$1; shift
    echo "+ [$name] $*"
    if [ "$DRY" = 1 ]; then
        [ "$2" = tools/benchmark.py ] && BENCH_ARGS+=("$(printf '%q ' "${@:3}")")
        return 0
    fi
    local status=ok
    "$@" > >(tee "$OUT/$name.md") 2>&1 || status="FAILED ($?)"
    [ "$status" = ok ] || FAILED=1
    echo "| $name | $status |" >> "$OUT/summary.md"
}

if [ "$TESTS" = 1 ]; then
    step tests "$PYTHON" -m pytest -q -rs tests/models/test_amp_numerics.py \
        tests/models/test_compile.py tests/compat/test_runtime.py \
        tests/tools/test_benchmark.py tests/tools/test_dist_train.py
fi
if [ "$BENCH" = 1 ]; then
    # config, input side
    for spec in "resnet50_saol_imagenet 224" "pyramidnet200_saol_cifar100 32"; do
        read -r config size <<< "$spec"
        common=(tools/benchmark.py "configs/$config.py" --device cuda
                --input-size "$size" --batch-size "$BATCH"
                --iters "$ITERS" --repeats "$REPEATS")
        for mode in fp32 amp; do
            amp=(); [ "$mode" = amp ] && amp=(--amp)
            step "bench_${config}_$mode" "$PYTHON" "${common[@]}" "${amp[@]}" \
                --out "$OUT/bench_${config}_$mode.json"
            # shellcheck disable=SC2086  # a list of variant names
            step "bench_${config}_${mode}_compile" "$PYTHON" "${common[@]}" \
                "${amp[@]}" --variants $COMPILE_VARIANTS --compile \
                --out "$OUT/bench_${config}_${mode}_compile.json"
        done
    done
fi
if [ "$DRY" = 1 ] && [ ${#BENCH_ARGS[@]} -gt 0 ]; then
    # The benchmark's own parser on every command line, in one process.
    printf '%s\n' "${BENCH_ARGS[@]}" | "$PYTHON" -c '
import shlex, sys
from mmsaol.apis.benchmark import parse_args
for line in sys.stdin:
    parse_args(shlex.split(line))
print("benchmark arguments: ok")' || FAILED=1
fi
[ "$DRY" = 1 ] || echo "report in $OUT (summary.md)"
exit "$FAILED"
