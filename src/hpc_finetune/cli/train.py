"""``hpc-finetune train RUN.yaml``: the training core in this process (laptop, or inside an allocation)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="run config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.runconfig import load_run_config

    cfg = load_run_config(args.config, args.set)  # config errors before the 5 s training import
    from hpc_finetune.train.core import train

    train(cfg)
    return 0
