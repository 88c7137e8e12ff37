#!/bin/bash
#SBATCH --job-name=golden
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=64
#SBATCH --mem=480G
#SBATCH --time=04:00:00
#SBATCH --gres=gpu:a100:4
#SBATCH --partition=gpu
#SBATCH --account=my-lab
#SBATCH --qos=normal
#SBATCH --constraint=a100_80gb
#SBATCH --mail-type=FAIL
#SBATCH --output=/work/alice/hpc-finetune/runs/golden/jobs/%j_0_log.out
#SBATCH --open-mode=append
#SBATCH --signal=USR2@300
#SBATCH --requeue

# hpc-finetune 0.1.0: run golden on cluster a100-example (1 node(s) x 4 GPU(s), 4 process(es) per node)
set -eo pipefail

# --- modules
module purge
module load cuda/12.4
module load miniforge3/24.3

# --- environment: conda (works in a non-interactive batch shell)
eval "$(conda shell.bash hook)"
conda activate "/work/$USER/envs/hpc-finetune"

# --- caches and environment
export HF_HOME="/work/alice/.cache/huggingface"
export HF_DATASETS_CACHE="/work/alice/.cache/huggingface/datasets"
export TRITON_CACHE_DIR="$TMPDIR/triton"
export TORCHINDUCTOR_CACHE_DIR="$TMPDIR/torchinductor"
export TORCH_EXTENSIONS_DIR="/work/alice/.cache/torch_extensions"
export WANDB_DIR="/work/alice/hpc-finetune/runs/golden"
export HPCFT_RUN_DIR="/work/alice/hpc-finetune/runs/golden"
export HPCFT_CHECKPOINT_SIGNAL="USR2"
export HF_HUB_OFFLINE="1"
export HF_DATASETS_OFFLINE="1"
export TRANSFORMERS_OFFLINE="1"
export WANDB_MODE="offline"
export NCCL_DEBUG="WARN"
export OMP_NUM_THREADS="8"
mkdir -p "$HF_HOME" "$HF_DATASETS_CACHE" "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR" "$TORCH_EXTENSIONS_DIR" "$WANDB_DIR"
echo "hpc-finetune: $(hostname) python=$(command -v python) CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"
# --- launch: one task per node; each node's launcher reads its own rank ($SLURM_NODEID) at run time
export SUBMITIT_EXECUTOR=slurm
status=0
srun --unbuffered --ntasks-per-node=1 --cpus-per-task=64 --kill-on-bad-exit=1 --output /work/alice/hpc-finetune/runs/golden/jobs/%j_%t_log.out python -u -m submitit.core._submit /work/alice/hpc-finetune/runs/golden/jobs || status=$?
if [ "$status" -ne 0 ]; then
  # a failed segment: log it, and requeue if the profile's retry_on_failure allows (never the same failure twice);
  # a preempted one is requeued once (Slurm would not: its steps ended before the GraceTime did)
  python -m hpc_finetune.job.segments /work/alice/hpc-finetune/runs/golden /work/alice/hpc-finetune/runs/golden/output "$status" 0 10 || true
  exit "$status"
fi
