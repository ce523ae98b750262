#!/usr/bin/env bash
# Multi-process training with torchrun, mmpretrain's tools/dist_train.sh
# interface:
#   bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# NPROC processes per node: one per GPU, or (CPU-only host) NPROC CPU
# processes that talk over gloo. Environment knobs: NNODES, NODE_RANK, PORT,
# MASTER_ADDR (as mmpretrain's) and PYTHON (the interpreter; default python).

CONFIG=$1
NPROC=$2
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
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
