#!/bin/bash
#SBATCH --job-name=golden
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=2000M
#SBATCH --time=00:20:00
#SBATCH --gpus-per-node=4
#SBATCH --partition=debug
#SBATCH --output=/tmp/hpcft-shared/hpc-finetune/runs/golden/jobs/%j_0_log.out
#SBATCH --open-mode=append
#SBATCH --signal=USR2@30
#SBATCH --requeue

# hpc-finetune 0.1.0: run golden on cluster devcluster (2 node(s) x 4 GPU(s), 4 process(es) per node)
set -eo pipefail

# --- caches and environment
export HF_HOME="/tmp/hpcft-shared/.cache/huggingface"
export HF_DATASETS_CACHE="/tmp/hpcft-shared/.cache/huggingface/datasets"
export TRITON_CACHE_DIR="${TMPDIR:-/tmp}/triton-cache"
export TORCHINDUCTOR_CACHE_DIR="${TMPDIR:-/tmp}/torchinductor-cache"
export TORCH_EXTENSIONS_DIR="/tmp/hpcft-shared/.cache/torch_extensions"
export WANDB_DIR="/tmp/hpcft-shared/hpc-finetune/runs/golden"
export HPCFT_RUN_DIR="/tmp/hpcft-shared/hpc-finetune/runs/golden"
export HPCFT_CHECKPOINT_SIGNAL="USR2"
export HF_HUB_OFFLINE="1"
export HF_DATASETS_OFFLINE="1"
export TRANSFORMERS_OFFLINE="1"
export WANDB_MODE="offline"
export OMP_NUM_THREADS="1"
mkdir -p "$HF_HOME" "$HF_DATASETS_CACHE" "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR" "$TORCH_EXTENSIONS_DIR" "$WANDB_DIR"
echo "hpc-finetune: $(hostname) python=$(command -v PYTHON) CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"
# --- launch: one task per node; each node's launcher reads its own rank ($SLURM_NODEID) at run time
export SUBMITIT_EXECUTOR=slurm
status=0
srun --unbuffered --ntasks-per-node=1 --cpus-per-task=4 --kill-on-bad-exit=1 --output /tmp/hpcft-shared/hpc-finetune/runs/golden/jobs/%j_%t_log.out PYTHON -u -m submitit.core._submit /tmp/hpcft-shared/hpc-finetune/runs/golden/jobs || status=$?
if [ "$status" -ne 0 ]; then
  # a failed segment: log it, and requeue if the profile's retry_on_failure allows (never the same failure twice);
  # a preempted one is requeued once (Slurm would not: its steps ended before the GraceTime did)
  PYTHON -m hpc_finetune.job.segments /tmp/hpcft-shared/hpc-finetune/runs/golden /tmp/hpcft-shared/hpc-finetune/runs/golden/output "$status" 0 5 || true
  exit "$status"
fi
