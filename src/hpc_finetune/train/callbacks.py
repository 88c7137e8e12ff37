"""Trainer callbacks: progress file for `status`, and save-on-signal before the time limit."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hpc_finetune.records import write_atomic


class ProgressCallback(TrainerCallback):
    """Writes OUTPUT/progress.json at every logging step and appends to OUTPUT/progress.jsonl (main process only)."""

    def __init__(self, output_dir: Path, tokens_per_step: int) -> None:
        self.output_dir = output_dir
        self.tokens_per_step = tokens_per_step
        self.started = time.time()
        self.first_step_at: float | None = None
        self.start_step = 0
        self.last: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()
        if state.is_world_process_zero:
            with (self.output_dir / "steps.log").open("a") as f:
                f.write(f"{state.global_step}\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        elapsed = time.time() - self.started
        steps_done = state.global_step - self.start_step
        entry = {
            "step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
            "loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"),
            "tokens_per_s": round(steps_done * self.tokens_per_step / elapsed, 1) if elapsed > 0 else None,
            "elapsed_s": round(elapsed, 2), "time": time.time(),
        }
        self.last = entry
        write_atomic(self.output_dir / "progress.json", json.dumps(entry) + "\n")
        with (self.output_dir / "progress.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")


class SaveOnSignalCallback(TrainerCallback):
    """On the checkpoint signal: finish the current optimizer step, save a checkpoint, stop.

    Every rank may see the signal at a different step, so the ranks agree with one tiny all-reduce per step.
    """

    def __init__(self, signame: str) -> None:
        self.received = False
        self.stopped_for_signal = False
        self.signum = getattr(signal, f"SIG{signame}")
        signal.signal(self.signum, self._handler)

    def _handler(self, signum, frame):  # noqa: ARG002
        self.received = True

    def _agreed(self) -> bool:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() and \
                dist.get_backend() == "nccl" else torch.device("cpu")
            flag = torch.tensor([1 if self.received else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return self.received

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed():
            self.stopped_for_signal = True
            control.should_save = True
            control.should_training_stop = True
        return control
