"""``hpc-finetune demo [DIR]``: build the tiny offline model, tokenizer, datasets and a run config."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", type=Path, default=Path("hpcft-demo"), help="where to write (default "
                                                                                   "./hpcft-demo)")
    p.add_argument("--size", choices=["tiny", "small", "base", "medium"], default="tiny",
                   help="model size: tiny (~0.1M parameters), small (~4M), base (~30M), medium (~190M, for GPUs)")
    p.add_argument("--samples", type=int, default=400, help="training examples per dataset")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.train.assets import build_demo

    info = build_demo(args.dir.resolve(), size=args.size, samples=args.samples)
    print(f"demo assets in {info['root']}: model ({info['parameters']:,} parameters, vocab {info['vocab']}), "
          f"text.jsonl, eval_text.jsonl, chat.jsonl ({info['samples']} examples), run.yaml")
    print(f"next: hpc-finetune submit --wait {Path(info['root']) / 'run.yaml'}")
    return 0
