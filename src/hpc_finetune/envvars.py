"""Every environment variable name hpc-finetune sets or reads, in one place (job script, node program, trainers).

Who sets and who reads each ``HPCFT_*`` name:

- ``RUN_DIR``: exported by the job script (render.py); read by the trainer (the run's own files: the DeepSpeed JSON,
  the error line for `status`, the next-steps lines of the log);
- ``CHECKPOINT_SIGNAL``: exported by the job script (the profile's ``signal``); read by the node program and the
  trainers (job/signals.py) to know which signal asks for a checkpoint;
- ``SIGNAL_DIR``: set by the node program for the trainers it starts (job/signals.py);
- ``DEEPSPEED_CONFIG``: set by the node program from the launch plan (job/launchplan.py) for a torchrun launch of
  DeepSpeed; read by the trainer, which hands the JSON to the Trainer (torchrun sets no accelerate environment);
- ``TOKENIZED_CACHE``: set by the user or the tests; read by the trainer's data preparation (where tokenized data is
  cached).
"""

from __future__ import annotations

RUN_DIR = "HPCFT_RUN_DIR"
CHECKPOINT_SIGNAL = "HPCFT_CHECKPOINT_SIGNAL"
DEFAULT_CHECKPOINT_SIGNAL = "USR2"  # the profile's default `signal` (profile.py) and the trainers' when unset
SIGNAL_DIR = "HPCFT_SIGNAL_DIR"
DEEPSPEED_CONFIG = "HPCFT_DEEPSPEED_CONFIG"
TOKENIZED_CACHE = "HPCFT_TOKENIZED_CACHE"
# Shell variables of a sweep's array script (set per task from SLURM_ARRAY_TASK_ID; not exported)
ARRAY_OUTPUT_DIR = "HPCFT_OUTPUT_DIR"
ARRAY_MEMBER_JOB = "HPCFT_MEMBER_JOB"

# Exported by an offline profile; the training core also sets the first three itself for local paths.
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
OFFLINE_VARS = {**{name: "1" for name in HUB_OFFLINE_VARS}, "WANDB_MODE": "offline"}
# Cache variable -> field of the profile's `caches` section (the job script exports and creates each one).
CACHE_VARS = {"HF_HOME": "hf_home", "HF_DATASETS_CACHE": "hf_datasets_cache",
              "TRITON_CACHE_DIR": "triton_cache_dir", "TORCHINDUCTOR_CACHE_DIR": "torchinductor_cache_dir",
              "TORCH_EXTENSIONS_DIR": "torch_extensions_dir", "WANDB_DIR": "wandb_dir"}

# torch elastic's agent (torchrun, and accelerate's multi-process launch, which runs it in-process) would answer
# SIGTERM by SIGTERM-ing its workers and SIGKILL-ing them 30 s later, then exit non-zero: leave SIGTERM to the
# trainers (job/launch.py ignores it in the launcher). The agent reads this default through its
# `--signals-to-handle` option (PET_ prefix). Set by the node program for the launcher.
LAUNCHER_ENV = {"PET_SIGNALS_TO_HANDLE": "SIGINT,SIGHUP,SIGQUIT"}
