"""``hpc-finetune``: the entry point. Bad input is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from hpc_finetune import __version__
from hpc_finetune.errors import UserError

COMMANDS = {
    "submit": "Render, check and submit a run to the cluster (or this machine).",
    "sweep": "Submit a grid of runs (learning rates, ranks, seeds...) as one Slurm job array: one campaign.",
    "compare": "A campaign's members side by side (losses, tokens/s, steps, GPU-hours, requeues), best first.",
    "render": "Print the job script that `submit` (or `sweep`, with --grid) would send, byte for byte.",
    "status": "Show runs: state, job, nodes x GPUs, time, progress.",
    "logs": "Print (or follow) a run's log.",
    "cancel": "Cancel a run's live job.",
    "requeue": "Requeue a running job, or start a new job for an ended run (same run directory).",
    "clusters": "List and validate cluster profiles.",
    "check": "Find every problem with a run before it queues.",
    "plan": "Estimate per-GPU peak memory (LoRA/QLoRA/ZeRO/FSDP aware) and the smallest change that fits.",
    "train": "Run the training core here, in this process (laptop, or one node).",
    "demo": "Build the tiny offline demo model, tokenizer and datasets.",
    "merge": "Merge a run's LoRA adapter into its base model.",
    "eval": "Eval loss, perplexity and side-by-side answers of the base and the tuned model.",
    "report": "Plot a run's progress (loss, eval loss, learning rate, grad norm, tokens/s) and write report.md.",
    "sync": "Upload the offline wandb data of a run's every segment with `wandb sync` (login node).",
    "schema": "List every field of the run config or the cluster profile, with help.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpc-finetune", description="Fine-tune language models on Slurm clusters.")
    parser.add_argument("--version", action="version", version=f"hpc-finetune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"hpc_finetune.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"hpc-finetune {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
