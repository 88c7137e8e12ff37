"""Environment variable names shared by the job script, the node program and the training core."""

from __future__ import annotations

# Exported by an offline profile; the training core also sets the first three itself for local paths.
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
OFFLINE_VARS = {**{name: "1" for name in HUB_OFFLINE_VARS}, "WANDB_MODE": "offline"}
# Cache variable -> field of the profile's `caches` section.
CACHE_VARS = {"HF_HOME": "hf_home", "HF_DATASETS_CACHE": "hf_datasets_cache",
              "TRITON_CACHE_DIR": "triton_cache_dir", "TORCHINDUCTOR_CACHE_DIR": "torchinductor_cache_dir",
              "TORCH_EXTENSIONS_DIR": "torch_extensions_dir", "WANDB_DIR": "wandb_dir"}
