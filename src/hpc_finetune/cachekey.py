"""The run-config half of the tokenized cache's key: every config value the tokenized (and packed) data depend on.

One owner for both sides: the training core's ``train/data.fingerprint`` (on the node) starts from ``config_key``
and swaps the paths for what they hold (the data files' identities, the tokenizer files' hash, its vocabulary and
chat template); a sweep's ``--prepare`` (on the login node, campaigns/chain.py) groups its members by
``config_key`` alone, so it queues one prepare job per distinct cache and no member tokenizes on its GPU node.

Standard library and the run config only: the login node imports this (no torch, transformers, datasets).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional, Sequence

from hpc_finetune.runconfig import RunConfig


def packing_layout(cfg: RunConfig) -> Optional[str]:
    """The row layout of the tokenized data: None (one sample per row), 'bfd', 'bfd_split' or 'wrapped'."""
    return cfg.training.packing_strategy if cfg.training.packing else None


def split_seed(cfg: RunConfig) -> Optional[int]:
    """The seed the cached data depend on: only the eval split drawn from the training data (``eval_fraction`` with
    no ``eval_file``) uses it; tokenizing and packing do not. So runs that differ only in ``training.seed`` (a sweep's
    ``--seeds``) share one tokenized cache, except where each seed holds out different rows."""
    d = cfg.data
    return cfg.training.seed if d.eval_fraction > 0 and not d.eval_file else None


def config_key(cfg: RunConfig) -> dict[str, Any]:
    """Every config value the tokenized cache depends on. ``train``, ``eval`` and ``tokenizer`` are the paths as
    configured: the fingerprint replaces them by what the files hold, and adds what no config holds (the cache's
    layout version and the package version, the tokenizer's vocabulary size and chat template)."""
    d = cfg.data
    return {
        "train": d.train_file, "eval": d.eval_file, "name": d.dataset_name,
        "splits": d.splits, "format": d.format, "text_field": d.text_field, "messages_field": d.messages_field,
        "eval_fraction": d.eval_fraction, "completion_only": d.completion_only_loss,
        "append_concat_token": d.append_concat_token, "add_special_tokens": d.add_special_tokens,
        "max_samples": d.max_samples, "seed": split_seed(cfg),
        "tokenizer": cfg.model.tokenizer_path or cfg.model.path,
        "chat_format": cfg.model.chat_template_format, "max_length": cfg.training.max_length,
        "packing": packing_layout(cfg),
    }


def digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def groups(configs: Sequence[RunConfig]) -> list[list[int]]:
    """The indices of ``configs`` grouped by their tokenized cache (same ``config_key``), in first-seen order."""
    out: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        out.setdefault(digest(config_key(cfg)), []).append(i)
    return list(out.values())
