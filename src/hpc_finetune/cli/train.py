"""``hpc-finetune train RUN.yaml``: the training core in this process (laptop, or inside an allocation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_finetune.overrides import add_set_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="run config (YAML)")
    add_set_argument(p)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.runconfig import load_run_config

    cfg = load_run_config(args.config, args.set)  # config errors before the 5 s training import
    from hpc_finetune.train.core import train

    train(cfg)
    return 0
