"""What a launch strategy asks of the distributed libraries, in one place for both launchers.

The accelerate path hands these settings over as ``fsdp_*`` keys of RUN_DIR/accelerate_config.yaml (accelerate turns
them into ``FSDP_*`` environment variables that the Trainer's accelerator reads); the torchrun path passes the same
settings to ``SFTConfig(fsdp=True, fsdp_config=...)``. A test builds accelerate's plugin both ways and compares.

FSDP version: 2 (per-parameter sharding, ``fully_shard``), explicitly on both paths. It is transformers' default
and the only one it keeps (FSDP1 is deprecated there), accelerate 1.15 keeps fp32 master copies of trainable
parameters under it (not for QLoRA, whose adapters TRL casts to bf16: FSDP2 only needs the trainable parameters
to share one dtype) and leaves non-floating 4-bit weights out of sharding, and bitsandbytes 0.50's ``Params4bit``
survives its chunk/split. ``use_orig_params`` is an FSDP1 notion: FSDP2 always shards the original parameters, so
LoRA's frozen and trainable parameters share a unit without it. Gradient checkpointing under FSDP is FSDP's own
activation checkpointing (non-reentrant; the Trainer refuses both at once).

Login-light: no training library here.
"""

from __future__ import annotations

from typing import Any

FSDP_VERSION = 2


def fsdp_settings(cfg: Any) -> dict[str, Any]:
    """The Trainer's ``fsdp_config`` for a run config (RunConfig) with ``launch.strategy: fsdp``."""
    return {
        "version": FSDP_VERSION,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's own _no_split_modules: one unit per decoder layer
        "reshard_after_forward": True,  # full shard
        "cpu_offload": bool(cfg.launch.offload_params),
        "state_dict_type": "SHARDED_STATE_DICT",  # checkpoints: every rank its shard; the final model is gathered
        "cpu_ram_efficient_loading": True,  # rank 0 reads the weights, the others receive them
        "activation_checkpointing": bool(cfg.training.gradient_checkpointing),
    }


# Trainer fsdp_config key -> accelerate config key (the YAML's fsdp_config section)
ACCELERATE_KEYS = {"version": "fsdp_version", "auto_wrap_policy": "fsdp_auto_wrap_policy",
                   "reshard_after_forward": "fsdp_reshard_after_forward", "cpu_offload": "fsdp_offload_params",
                   "state_dict_type": "fsdp_state_dict_type",
                   "cpu_ram_efficient_loading": "fsdp_cpu_ram_efficient_loading",
                   "activation_checkpointing": "fsdp_activation_checkpointing"}


def accelerate_fsdp_config(cfg: Any) -> dict[str, Any]:
    return {ACCELERATE_KEYS[k]: v for k, v in sorted(fsdp_settings(cfg).items(), key=lambda kv: ACCELERATE_KEYS[kv[0]])}
