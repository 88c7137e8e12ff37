"""The shared SFT training core: the same code on a laptop, in one Slurm node, and on every rank of many nodes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.job.checkpoints import last_complete
from hpc_finetune import layout
from hpc_finetune.envvars import DEEPSPEED_CONFIG, HUB_OFFLINE_VARS, RUN_DIR
from hpc_finetune.errors import UserError
from hpc_finetune.overrides import add_set_argument
from hpc_finetune.files import write_atomic
from hpc_finetune.runconfig import RunConfig, is_hub_id, load_run_config
from hpc_finetune.train.data import global_rank as rank



def default_output_dir(cfg: RunConfig) -> Path:
    """The config's output_dir (a submitted run's run.yaml always names it: jobspec.resolve); else the layout's
    default for the run directory of ``hpc-finetune train`` in this process (./runs/NAME)."""
    return Path(cfg.output_dir) if cfg.output_dir else layout.default_output_dir(layout.local_run_dir(cfg.name))


def set_offline(cfg: RunConfig) -> None:
    """Local paths mean no network at all; a hub id while offline is an error naming the fix."""
    hub = [v for v in (cfg.model.path, cfg.model.tokenizer_path) if v and is_hub_id(v)]
    if not hub and not (cfg.data.dataset_name and is_hub_id(cfg.data.dataset_name)):
        for var in HUB_OFFLINE_VARS:
            os.environ[var] = "1"
    elif any(os.environ.get(v) == "1" for v in HUB_OFFLINE_VARS):
        raise UserError(f"{hub[0] if hub else cfg.data.dataset_name!r} is a hub id but this node is offline "
                        "(HF_HUB_OFFLINE=1); download it where there is internet and set the local folder",
                        field="model.path" if hub else "data.dataset_name")


def sft_config(cfg: RunConfig, output_dir: Path, *, has_eval: bool) -> Any:
    from trl import SFTConfig

    t, log = cfg.training, cfg.logging
    report_to = []
    if log.wandb != "disabled":
        report_to.append("wandb")
    if log.tensorboard:
        report_to.append("tensorboard")
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), run_name=cfg.name, seed=t.seed, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps or t.warmup_ratio,
        weight_decay=t.weight_decay, num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, optim=t.optim, max_grad_norm=t.max_grad_norm,
        bf16=t.precision == "bf16", fp16=t.precision == "fp16",
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": t.use_reentrant} if t.gradient_checkpointing else None,
        max_length=t.max_length, packing=False,  # packed (or not) and tokenized by us, cached; train/packing.py
        dataset_kwargs={"skip_prepare_dataset": True}, completion_only_loss=cfg.data.completion_only_loss,
        logging_steps=t.logging_steps, logging_strategy="steps",
        eval_strategy=t.eval_strategy if has_eval else "no", eval_steps=t.eval_steps,
        save_strategy=t.save_strategy, save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        dataloader_num_workers=t.dataloader_num_workers, report_to=report_to or "none",
        push_to_hub=log.push_to_hub, hub_model_id=log.hub_model_id, save_only_model=False,
        remove_unused_columns=False, average_tokens_across_devices=False,
    )
    kwargs.update(distribution_args(cfg, output_dir, cuda=_cuda_available()))
    valid = {f.name for f in dataclasses.fields(SFTConfig)}
    for key, value in t.extra_args.items():
        if key not in valid:
            close = [v for v in valid if key.split("_")[0] in v][:8]
            raise UserError(f"{key!r} is not an SFTConfig/TrainingArguments field"
                            + (f" (similar: {', '.join(sorted(close))})" if close else ""),
                            field=f"training.extra_args.{key}")
        kwargs[key] = value
    try:
        return SFTConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"rejected by SFTConfig: {str(exc).splitlines()[0]}", field="training") from None


def distribution_args(cfg: RunConfig, output_dir: Path, *, cuda: bool) -> dict[str, Any]:
    """The SFTConfig fields that make the processes of a launch train ONE model, whichever launcher started them.

    - CPU: ``use_cpu`` (accelerate picks its multi-CPU DDP mode only when told the run is on CPU; without it every
      rank trains its own copy and gradients are never all-reduced) and gloo. DeepSpeed is left to its own engine
      (``use_cpu`` would bypass it), which all-reduces on gloo itself.
    - LoRA under DDP: ``ddp_find_unused_parameters=False``: transformers searches for unused parameters for every
      model that is not a PreTrainedModel (a PeftModel is not), a graph walk per step that also breaks reentrant
      gradient checkpointing. Override with ``training.extra_args.ddp_find_unused_parameters``.
    - torchrun: the launcher sets no accelerate environment, so the DeepSpeed JSON and the FSDP settings go to the
      Trainer directly, the same settings the accelerate config carries (one source: strategies.fsdp_settings).
    - FSDP: gradient checkpointing is FSDP's own activation checkpointing (the trainer refuses both at once).
    """
    from hpc_finetune.strategies import fsdp_settings

    out: dict[str, Any] = {}
    strategy = cfg.launch.strategy
    if not cuda:
        out["dataloader_pin_memory"] = False  # pinning only speeds host-to-GPU copies; on CPU it is pure cost
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            out["ddp_backend"] = "gloo"
        if strategy != "deepspeed":
            out["use_cpu"] = True
    if cfg.uses_lora and strategy == "ddp":
        out["ddp_find_unused_parameters"] = False
    if strategy == "deepspeed" and cfg.launch.launcher == "torchrun":
        if not os.environ.get(DEEPSPEED_CONFIG):
            raise UserError(f"DeepSpeed under torchrun takes its JSON from the job's launch plan ({DEEPSPEED_CONFIG}, "
                            "set by the node program); run it through `hpc-finetune submit`, or use "
                            "launch.launcher: accelerate", field="launch.launcher")
        out["deepspeed"] = os.environ[DEEPSPEED_CONFIG]
    if strategy == "fsdp":
        out["gradient_checkpointing"] = False
        out["gradient_checkpointing_kwargs"] = None
        if cfg.launch.launcher == "torchrun":
            out["fsdp"] = True
            out["fsdp_config"] = fsdp_settings(cfg)
    return out


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def limit_visible_devices(cfg: RunConfig) -> None:
    """One device per training process (none for a CPU-only request), before CUDA is initialised."""
    from hpc_finetune import devices

    visible = devices.for_process(cfg.resources.gpus_per_node, os.environ)
    if visible is not None and os.environ.get(devices.VAR) != visible:
        os.environ[devices.VAR] = visible


def cuda_summary() -> dict[str, Any]:
    """The main process's device and its peak allocated memory (for `plan` comparisons and the GPU bench)."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda_device": None, "cuda_max_memory_allocated_gb": None}
    return {"cuda_device": torch.cuda.get_device_name(),
            "cuda_max_memory_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3)}  # decimal, as plan


def setup_wandb(cfg: RunConfig, output_dir: Path) -> Optional[str]:
    """Same wandb run across requeues: the run id lives in the output directory and resumes with it."""
    if cfg.logging.wandb == "disabled":
        os.environ["WANDB_MODE"] = "disabled"
        return None
    id_file = output_dir / "wandb_run_id"
    if rank() == 0 and not id_file.exists():
        write_atomic(id_file, uuid.uuid4().hex[:12])
    while not id_file.exists():
        time.sleep(0.2)
    run_id = id_file.read_text().strip()
    if os.environ.get("WANDB_MODE") != "offline" or cfg.logging.wandb == "offline":
        os.environ["WANDB_MODE"] = cfg.logging.wandb
    os.environ.setdefault("WANDB_DIR", str(output_dir))
    os.environ.update(WANDB_RUN_ID=run_id, WANDB_RESUME="allow", WANDB_PROJECT=cfg.logging.wandb_project)
    if cfg.logging.wandb_entity:
        os.environ["WANDB_ENTITY"] = cfg.logging.wandb_entity
    os.environ.setdefault("WANDB_SILENT", "true")
    return run_id


def resume_point(cfg: RunConfig, output_dir: Path) -> Optional[str]:
    resume = cfg.training.resume
    if resume is False:
        return None
    if resume == "auto":
        ckpt = last_complete(output_dir)
        return str(ckpt) if ckpt else None
    if not Path(str(resume)).is_dir():
        raise UserError(f"checkpoint {resume} does not exist", field="training.resume")
    return str(resume)


def build_trainer(cfg: RunConfig, output_dir: Path) -> tuple[Any, dict]:
    """Model, tokenizer, data and SFTTrainer, ready to train. Returns (trainer, data info)."""
    from transformers import set_seed

    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train import packing
    from hpc_finetune.train.model import load_model, load_tokenizer, lora_config

    set_seed(cfg.training.seed)
    tokenizer = load_tokenizer(cfg)
    train_ds, eval_ds, info = data_mod.prepare(cfg, tokenizer)
    args = sft_config(cfg, output_dir, has_eval=eval_ds is not None)
    model = load_model(cfg, tokenizer)
    trainer = packing.trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                      processing_class=tokenizer, peft_config=lora_config(cfg),
                                      data_collator=packing.collator(cfg, tokenizer))  # samples kept apart
    return trainer, info


def train(cfg: RunConfig) -> dict:
    """Train (resuming if a complete checkpoint exists); returns the summary (also written to summary.json)."""
    from hpc_finetune.job import signals
    signals.reset()
    signals.install()  # first: a checkpoint signal during start-up is remembered, not lost (job/signals.py)
    # before anything imports bitsandbytes/peft (the callbacks below do): they ask CUDA for its devices, and CUDA
    # reads CUDA_VISIBLE_DEVICES only then
    limit_visible_devices(cfg)
    from hpc_finetune.train.callbacks import (AlreadyTrained, ProgressCallback, SaveOnSignalCallback,
                                              StopWhenResumedAtEnd, load_user_callbacks)

    started = time.time()
    output_dir = default_output_dir(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    set_offline(cfg)
    if cfg.launch.strategy == "fsdp":
        # the accelerate launcher exports this; under torchrun the Trainer would only set it after the model
        # loaded, and transformers' FSDP-aware loading (rank 0 reads, the others get the weights) checks it
        os.environ.setdefault("ACCELERATE_USE_FSDP", "true")
    user_callbacks = load_user_callbacks(cfg.training.callbacks)  # before the model: a typo fails in seconds
    wandb_id = setup_wandb(cfg, output_dir)
    trainer, info = build_trainer(cfg, output_dir)
    args = trainer.args
    world = args.world_size
    rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    tokens_per_row = info["train_tokens"] / max(1, info["train_rows"])
    progress = ProgressCallback(output_dir, int(rows_per_step * tokens_per_row))
    signal_cb = SaveOnSignalCallback()
    trainer.add_callback(progress)
    trainer.add_callback(signal_cb)
    # after the signal callback: a warning signal during start-up still exits at once for the requeue (a final
    # save of a big sharded model could outlast the signal's lead); before the user's callbacks
    trainer.add_callback(StopWhenResumedAtEnd())
    for callback in user_callbacks:
        trainer.add_callback(callback)
    resume = resume_point(cfg, output_dir)
    print(f"hpc-finetune train: host={socket.gethostname()} rank={args.process_index} world_size={world} "
          f"parallel_mode={args.parallel_mode.value} distributed_type={args.distributed_state.distributed_type.value} "
          f"device={args.device} method={cfg.method} tokenized_cache={info['cache']} resume_from={resume or 'none'}",
          flush=True)
    if rank() == 0 and user_callbacks:
        print("hpc-finetune train: callbacks added: " + ", ".join(type(c).__name__ for c in user_callbacks) +
              f" ({', '.join(cfg.training.callbacks)})", flush=True)
    if rank() == 0 and hasattr(trainer.model, "print_trainable_parameters"):
        trainer.model.print_trainable_parameters()
    t0 = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
        at_end = False
    except AlreadyTrained:  # the checkpoint is at the last step: no step to train, the final save below remains
        result, at_end = None, True
    train_seconds = time.time() - t0
    state = trainer.state
    summary = {
        "run": cfg.name, "method": cfg.method, "world_size": world,
        "step": state.global_step, "max_steps": state.max_steps,
        "final_loss": next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None),
        "train_loss": result.training_loss if result is not None else
        next((h["train_loss"] for h in reversed(state.log_history) if "train_loss" in h), None),
        "resumed_from": resume, "finished_from_checkpoint": at_end, "tokenized_cache": info["cache"],
        "tokens_per_step": progress.tokens_per_step, "train_seconds": round(train_seconds, 2),
        "tokens_per_s": round((state.global_step - progress.start_step) * progress.tokens_per_step
                              / train_seconds, 1) if train_seconds > 0 and not at_end else None,
        "startup_seconds": round((progress.first_step_at or time.time()) - started, 2),
        "first_step_at": progress.first_step_at,
        "num_tokens": next((h["num_tokens"] for h in reversed(state.log_history) if "num_tokens" in h), None),
        "pad_fraction": info.get("pad_fraction"),
        "runtime_seconds": round(time.time() - started, 2), "wandb_run_id": wandb_id,
        "interrupted": signal_cb.stopped_for_signal, "versions": versions(),
        "attention": getattr(trainer.model.config, "_attn_implementation", None), **cuda_summary(),
    }
    if signal_cb.stopped_for_signal:
        if rank() == 0:
            write_atomic(output_dir / "interrupted.json", json.dumps(summary, indent=1) + "\n")
        print(f"hpc-finetune train: checkpoint saved at step {state.global_step} on signal; exiting for requeue",
              flush=True)
        return summary
    final = output_dir / "final"
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(final))
    if rank() == 0:
        trainer.processing_class.save_pretrained(str(final))
        write_atomic(output_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(f"hpc-finetune train: done: {state.global_step} steps, final loss {summary['final_loss']}, "
          f"model in {final}", flush=True)
    if rank() == 0:
        for line in next_steps(cfg, final, os.environ.get(RUN_DIR)):
            print(f"hpc-finetune train: {line}", flush=True)
    return summary


def next_steps(cfg: RunConfig, final: Path, run_dir: Optional[str]) -> list[str]:
    """The last lines of a finished job's log: where things are, and what to run next (from the login node)."""
    run = Path(run_dir).name if run_dir else str(final.parent.parent)
    what = "adapter" if cfg.uses_lora else "model"
    lines = [f"{what}: {final}"]
    if run_dir:
        lines.append(f"eval results will be in {Path(run_dir) / 'eval'}, the report in {Path(run_dir) / 'report'}")
    lines.append(f"next: hpc-finetune eval {run}   |   hpc-finetune report {run}"
                 + (f"   |   hpc-finetune merge {run}" if cfg.uses_lora else "")
                 + (f"   |   hpc-finetune sync {run}" if cfg.logging.wandb == "offline" else ""))
    return lines


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "hpc-finetune"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_finetune.train")
    parser.add_argument("config", type=Path)
    add_set_argument(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_run_config(args.config, args.set)
        train(cfg)
    except UserError as exc:  # bad data or a bad setting: one line in the log, and the run's reason in `status`
        line = str(exc)
        print(f"hpc-finetune train: error: {line}", file=sys.stderr, flush=True)
        run_dir = os.environ.get(RUN_DIR)
        if run_dir and os.environ.get("RANK", "0") == "0":
            from hpc_finetune.job.segments import log_event
            from hpc_finetune.states import TRAINER_ERROR

            try:
                log_event(run_dir, TRAINER_ERROR, reason=line.splitlines()[0] if line else "error")
            except OSError:
                pass  # the log line above still says it
        return 2
    return 0
