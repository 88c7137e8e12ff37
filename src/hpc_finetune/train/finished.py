"""A checkpoint saved at the last step: the run is trained, so finish it without another optimizer step.

The Trainer runs an optimizer step before it looks at ``should_training_stop`` (transformers' ``_inner_training_loop``
/ ``_run_epoch``), so resuming from a checkpoint at ``max_steps`` trains step ``max_steps + 1`` unless the last step
closed an epoch. That checkpoint exists when the time-limit or preemption signal arrives during the last step (the
trainer saves and exits for a requeue), or when a job is killed between its last checkpoint and its final save.
Here the checkpoint's own weights become ``final/`` and ``summary.json`` is written from its trainer state. Only for
checkpoints that hold the weights in Hugging Face's format (LoRA adapters, unsharded full models); a sharded one
(FSDP, DeepSpeed) resumes as before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.files import write_atomic
from hpc_finetune.job.checkpoints import WEIGHTS

TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")


def state_at_end(checkpoint: Optional[str], max_steps: int) -> Optional[dict[str, Any]]:
    """The checkpoint's trainer state if it is at (or past) ``max_steps`` and holds loadable weights, else None."""
    if not checkpoint or max_steps <= 0:
        return None
    ckpt = Path(checkpoint)
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None
    if int(state.get("global_step") or 0) < max_steps or not any((ckpt / w).is_file() for w in WEIGHTS):
        return None
    return state


def finish(checkpoint: Path, output_dir: Path, state: dict[str, Any], summary: dict[str, Any], *,
           main_process: bool) -> dict[str, Any]:
    """Copy the checkpoint's weights, configs and tokenizer into OUTPUT/final and write summary.json (main process
    only); returns the summary."""
    history = state.get("log_history") or []
    summary = {**summary, "step": state.get("global_step"), "max_steps": state.get("max_steps"),
               "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
               "train_loss": next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None),
               "resumed_from": str(checkpoint), "finished_from_checkpoint": True}
    if main_process:
        final = output_dir / "final"
        final.mkdir(parents=True, exist_ok=True)
        for path in checkpoint.iterdir():
            if path.is_file() and path.name not in TRAINING_STATE and not path.name.startswith("rng_state"):
                shutil.copy2(path, final / path.name)
        (output_dir / "interrupted.json").unlink(missing_ok=True)
        write_atomic(output_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
