#!/bin/bash
# hpc-finetune 0.1.0: run golden on this machine (cluster local, no scheduler)
set -eo pipefail

# --- caches and environment
export HF_HOME="/home/alice/.cache/huggingface"
export HF_DATASETS_CACHE="/home/alice/.cache/huggingface/datasets"
export TRITON_CACHE_DIR="${TMPDIR:-/tmp}/triton-cache"
export TORCHINDUCTOR_CACHE_DIR="${TMPDIR:-/tmp}/torchinductor-cache"
export TORCH_EXTENSIONS_DIR="/home/alice/.cache/torch_extensions"
export WANDB_DIR="/home/alice/hpc-finetune/runs/golden"
export HPCFT_RUN_DIR="/home/alice/hpc-finetune/runs/golden"
export HPCFT_CHECKPOINT_SIGNAL="USR2"
export HF_HUB_OFFLINE="1"
export HF_DATASETS_OFFLINE="1"
export TRANSFORMERS_OFFLINE="1"
export WANDB_MODE="offline"
mkdir -p "$HF_HOME" "$HF_DATASETS_CACHE" "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR" "$TORCH_EXTENSIONS_DIR" "$WANDB_DIR"
echo "hpc-finetune: $(hostname) python=$(command -v PYTHON) CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"

# --- launch: submitit's local controller runs the node program and enforces the time limit
export SUBMITIT_EXECUTOR=local
export SUBMITIT_LOCAL_NTASKS=1 SUBMITIT_LOCAL_NODEID=0 SUBMITIT_LOCAL_JOB_NUM_NODES=1
export SUBMITIT_LOCAL_TIMEOUT_S=14400 SUBMITIT_LOCAL_SIGNAL_DELAY_S=300
export SUBMITIT_STDERR_TO_STDOUT=1 SUBMITIT_LOCAL_WITH_SHELL=
export SUBMITIT_LOCAL_COMMAND='PYTHON -u -m submitit.core._submit /home/alice/hpc-finetune/runs/golden/jobs'
exec PYTHON -u -m submitit.local._local /home/alice/hpc-finetune/runs/golden/jobs
