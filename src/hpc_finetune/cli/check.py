"""``hpc-finetune check RUN.yaml``: every problem at once, each with its fix, before anything queues."""

from __future__ import annotations

import argparse

from hpc_finetune.cli.args import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--full", action="store_true", help="read every data record (default: the first few), with a "
                                                       "progress line for big files")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.check import raise_problems
    from hpc_finetune.cli.common import load_with_flags
    from hpc_finetune.jobspec import runs_root

    profile, cfg = load_with_flags(args)
    spec, notes = raise_problems(cfg, profile, runs_root(profile) / "check", config_source=str(args.config),
                                 full=args.full)
    print(f"{args.config}: ok for cluster {profile.name} ({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s), "
          f"{spec.time})")
    for note in notes:
        print(f"  {note}")
    return 0
