"""Trainer callbacks: progress file for `status`, and save-on-signal before the time limit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hpc_finetune.files import write_atomic


class ProgressCallback(TrainerCallback):
    """The main process's record of training, for `status` and for the requeue logic:

    - OUTPUT/steps.log: every optimizer step, one line each, as it ends;
    - OUTPUT/progress.jsonl: every logging step (``kind: train``: loss, learning rate, grad norm, tokens,
      tokens/s) and every evaluation (``kind: eval``: eval_loss and the trainer's other ``eval_*`` metrics), for
      `status`, `report` and `eval`;
    - OUTPUT/progress.json: the latest of those, replaced atomically at most every SNAPSHOT_SECONDS and at every
      save and at the end.

    The two logs stay open in append mode and are flushed line by line: a step costs one write, not an open and a
    close (which on shared file systems is most of the cost of a tiny step's bookkeeping).
    """

    SNAPSHOT_SECONDS = 2.0

    def __init__(self, output_dir: Path, tokens_per_step: int) -> None:
        self.output_dir = output_dir
        self.tokens_per_step = tokens_per_step
        self.started = time.time()
        self.first_step_at: float | None = None
        self.start_step = 0
        self.last: dict[str, Any] = {}
        self._snapshot_at = 0.0
        self._written: dict[str, Any] = {}
        self._files: dict[str, Any] = {}

    def _append(self, name: str, line: str) -> None:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = (self.output_dir / name).open("a", encoding="utf-8")
        f.write(line)
        f.flush()

    def _snapshot(self) -> None:
        if self.last and self.last is not self._written:
            write_atomic(self.output_dir / "progress.json", json.dumps(self.last) + "\n")
            self._written = self.last
            self._snapshot_at = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()
        if state.is_world_process_zero:
            self._append("steps.log", f"{state.global_step}\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" not in logs:
            evals = {k: v for k, v in logs.items() if k.startswith("eval_")}
            if "eval_loss" in evals:  # an evaluation: its own entry, not the latest training progress
                entry = {"kind": "eval", "step": state.global_step, "epoch": round(state.epoch or 0, 4), **evals,
                         "time": time.time()}
                self._append("progress.jsonl", json.dumps(entry) + "\n")
            return  # the end-of-training summary (train_runtime, ...) goes to summary.json instead
        now = time.time()
        elapsed = now - self.started
        steps_done = state.global_step - self.start_step
        entry = {
            "kind": "train",
            "step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
            "loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            "num_tokens": logs.get("num_tokens"),  # tokens trained on so far (all ranks), as TRL counts them
            "tokens_per_s": round(steps_done * self.tokens_per_step / elapsed, 1) if elapsed > 0 else None,
            "elapsed_s": round(elapsed, 2), "time": now,
        }
        self.last = entry
        self._append("progress.jsonl", json.dumps(entry) + "\n")
        if now - self._snapshot_at >= self.SNAPSHOT_SECONDS:
            self._snapshot()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._snapshot()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._snapshot()
        for f in self._files.values():
            f.close()
        self._files.clear()


class SaveOnSignalCallback(TrainerCallback):
    """On a checkpoint signal (see job/signals.py: the profile's warning signal or SIGTERM), at the next safe point:

    - at the start of training, before this segment's first step (the signal came during start-up): stop at once,
      without a checkpoint: nothing was trained since the last one, and a save could outlast the time left;
    - at the end of an optimizer step: save a checkpoint, stop.

    Every rank may see the signal at a different moment, so the ranks agree with one tiny all-reduce at each point.
    """

    def __init__(self) -> None:  # the signals come from job/signals.py
        from hpc_finetune.job import signals

        signals.install()  # idempotent: train() installed it first; this covers a trainer built elsewhere
        self._signals = signals
        self.stopped_for_signal = False

    @property
    def received(self) -> bool:
        return self._signals.received() is not None

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

    def on_train_begin(self, args, state, control, **kwargs):
        if not self._agreed():
            return control
        # The Trainer runs one step before it looks at should_training_stop, so leave the process here: every rank
        # agreed, nothing of this segment is lost, and the node program requeues the job.
        self.stopped_for_signal = True
        name = self._signals.received() or "another rank's signal"
        if state.is_world_process_zero:
            write_atomic(Path(args.output_dir) / "interrupted.json",
                         json.dumps({"step": state.global_step, "signal": name, "during": "start-up",
                                     "time": time.time()}, indent=1) + "\n")
        print(f"hpc-finetune train: rank {args.process_index}: {name} during start-up, before step "
              f"{state.global_step + 1}: no checkpoint needed (nothing trained since the last one); exiting for "
              "requeue", flush=True)
        raise SystemExit(0)

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed():
            self.stopped_for_signal = True
            control.should_save = True
            control.should_training_stop = True
            name = self._signals.received() or "another rank's signal"
            print(f"hpc-finetune train: rank {args.process_index}: {name}, stopping after step {state.global_step}",
                  flush=True)
        return control


class AlreadyTrained(Exception):
    """The checkpoint this segment resumed from is at (or past) max_steps: there is no step left to train."""


class StopWhenResumedAtEnd(TrainerCallback):
    """A checkpoint at the last step (the warning signal came during the final step, or the job was killed between
    its last checkpoint and its final save): finish the run from it without another optimizer step.

    The Trainer runs an optimizer step before it looks at ``should_training_stop`` (transformers 5.x
    ``_inner_training_loop`` -> ``_run_epoch``: no check before the first step of a resumed epoch), so resuming
    from a checkpoint at ``max_steps`` would train step ``max_steps + 1``. ``on_train_begin`` runs after the
    trainer state, the weights (plain, LoRA, and the FSDP/DeepSpeed shards in ``_prepare_for_training``), the
    optimizer and the scheduler were loaded from the checkpoint, and on every rank with the same state: raising
    here leaves the loaded, wrapped model for the ordinary final save (train/core.py catches it), the same for every
    checkpoint format. train/core.py adds it right after SaveOnSignalCallback.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            print(f"hpc-finetune train: rank {args.process_index}: the checkpoint is at step {state.global_step} of "
                  f"{state.max_steps}: finishing from it without another step", flush=True)
            raise AlreadyTrained(state.global_step)
        return control


def load_user_callbacks(specs: list[str]) -> list[TrainerCallback]:
    """The run config's ``training.callbacks`` (their form checked when the config loaded): import each class (from a
    module on the node's Python path, or from a file on shared storage) and build it with no arguments. Any problem
    is one UserError naming the entry."""
    import importlib
    import importlib.util
    import socket
    import sys

    from hpc_finetune.errors import UserError
    from hpc_finetune.runconfig import parse_callback

    built = []
    for i, spec in enumerate(specs):
        field = f"training.callbacks[{i}]"
        target, name, is_file = parse_callback(spec)
        if is_file and not Path(target).is_file():
            raise UserError(f"callback file {target} does not exist on {socket.gethostname()}", field=field)
        try:
            if is_file:
                mod_name = f"_hpcft_callbacks_{i}_{Path(target).stem}"
                mod_spec = importlib.util.spec_from_file_location(mod_name, target)
                module = sys.modules[mod_name] = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
        except Exception as exc:  # the user's code: say which entry failed to import, and how
            raise UserError(f"cannot import {target}: {type(exc).__name__}: {exc}", field=field) from None
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, TrainerCallback)):
            raise UserError(f"{target} has no TrainerCallback subclass named {name!r}", field=field)
        try:
            built.append(cls())
        except Exception as exc:
            raise UserError(f"{name}() failed: {type(exc).__name__}: {exc}", field=field) from None
    return built
