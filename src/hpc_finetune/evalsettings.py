"""What `hpc-finetune eval` is asked for: generation settings and the flags that set them, shared by the login
command (cli/eval.py) and the program a job runs (train/evaluate.py). Login-light."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from hpc_finetune.errors import UserError


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy by default: the same prompt gives the same answer
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


# every flag add_generation_arguments defines (argparse dest names): `eval --submit` passes them on to the job
FLAGS = ("data", "prompts", "max_new_tokens", "sample", "temperature", "top_p", "seed", "batch_size")


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    """The flags shared by `hpc-finetune eval` and this program and `python -m hpc_finetune.train.evaluate`."""
    p.add_argument("--data", help="eval data file instead of the run's eval_file / held-out fraction")
    p.add_argument("--prompts", help="prompts file instead of the run config's eval.prompts_file")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="eval batch size (default: training.per_device_eval_batch_size)")


def settings(args: argparse.Namespace) -> GenerationSettings:
    import math

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1", source="eval")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UserError(f"--temperature must be a positive number, not {args.temperature}", source="eval")
    if not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise UserError(f"--top-p must be in (0, 1], not {args.top_p}", source="eval")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError("--batch-size must be at least 1", source="eval")
    return GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                              temperature=args.temperature, top_p=args.top_p, seed=args.seed)
