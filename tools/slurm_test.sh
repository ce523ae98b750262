#!/usr/bin/env bash
# Testing on a Slurm cluster, mmpretrain's tools/slurm_test.sh interface:
#   [GPUS=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [test.py args...]
# Environment knobs (as mmpretrain's): GPUS (tasks in all), GPUS_PER_NODE,
# CPUS_PER_TASK, SRUN_ARGS (extra srun options, split at whitespace, never
# evaluated or globbed); and PYTHON (the interpreter; default python).
# On CPU-only nodes set GPUS_PER_NODE to the tasks per node and GRES= (empty)
# so that no GPU is requested: the tasks then run with gloo. Paths may
# contain spaces: every value is passed as one argument.

set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
read -r -a SRUN_OPTIONS <<< "${SRUN_ARGS:-}"
PYTHON=${PYTHON:-python}
TOOLS=$(dirname "$0")

PYTHONPATH="${TOOLS}/..${PYTHONPATH:+:${PYTHONPATH}}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES:+"--gres=${GRES}"} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    "${SRUN_OPTIONS[@]}" \
    "${PYTHON}" -u "${TOOLS}/test.py" "${CONFIG}" "${CHECKPOINT}" \
    --launcher=slurm "${@:5}"
