#!/usr/bin/env bash
# Everything of mmsaol that needs a GPU, in one run (about 10 minutes on one
# GPU): the CUDA tests (fp16 AMP numerics and an AMP training run, CUDA
# benchmark; NCCL + SyncBN ones when 2+ GPUs are visible) and the ResNet-50
# cost table at 224 px in float32 and with --amp, with the card named.
#   bash tools/gpu_report.sh [OUT_DIR] [BATCH_SIZE]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-work_dirs/gpu_report}
BATCH=${2:-64}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPU(s), torch', torch.__version__)" | tee "$OUT/device.txt" || exit 1
"$PYTHON" -m pytest -q -rs tests/models/test_amp_numerics.py \
    tests/compat/test_runtime.py tests/tools/test_benchmark.py \
    tests/tools/test_dist_train.py 2>&1 | tee "$OUT/tests.txt"
for mode in fp32 amp; do
    flag=""; [ "$mode" = amp ] && flag="--amp"
    "$PYTHON" tools/benchmark.py configs/resnet50_saol_imagenet.py \
        --device cuda --batch-size "$BATCH" --iters 20 --repeats 5 $flag \
        --out "$OUT/benchmark_$mode.json" | tee "$OUT/benchmark_$mode.md"
done
echo "report in $OUT"
