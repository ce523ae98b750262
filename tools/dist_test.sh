#!/usr/bin/env bash
# Multi-process testing with torchrun, mmpretrain's tools/dist_test.sh
# interface:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# NPROC processes per node (GPUs, or gloo CPU processes on a CPU-only
# host). Environment knobs: NNODES, NODE_RANK, PORT, MASTER_ADDR (as
# mmpretrain's) and PYTHON (the interpreter; default python). Paths may
# contain spaces: every value is passed as one argument.

CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:${PYTHONPATH}}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
