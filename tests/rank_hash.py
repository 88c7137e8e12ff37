"""A `training.callbacks` entry for the distributed tests: at the end of training every rank prints a hash of the
trainable parameters it holds, so a test can prove the ranks trained ONE model (gradients all-reduced) instead of
N copies that merely ran side by side.

Under ZeRO-3 each rank holds a shard only; the full parameters are gathered (a collective every rank joins) first.
"""

from __future__ import annotations

import hashlib
import os

from transformers import TrainerCallback


def trainable_hash(model) -> str:
    import contextlib

    import torch

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gather = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for _, p in params):  # DeepSpeed ZeRO-3 partitioned parameters
        import deepspeed

        gather = deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None)
    digest = hashlib.sha256()
    with gather, torch.no_grad():
        for name, p in sorted(params, key=lambda np: np[0]):
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class RankHash(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        print(f"hpc-finetune test: rank={os.environ.get('RANK', '0')} parallel_mode={args.parallel_mode.value} "
              f"trainable_sha256={trainable_hash(model)} step={state.global_step}", flush=True)


def rank_hashes(log: str) -> dict[int, str]:
    """rank -> hash from a job log (every rank's line)."""
    import re

    return {int(r): h for r, h in re.findall(r"hpc-finetune test: rank=(\d+) parallel_mode=distributed "
                                             r"trainable_sha256=(\w+)", log)}
