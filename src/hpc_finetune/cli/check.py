"""``hpc-finetune check RUN.yaml``: every problem at once, each with its fix, before anything queues."""

from __future__ import annotations

import argparse

from hpc_finetune.cli.args import add_run_arguments, run_request


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--full", action="store_true", help="read every data record (default: the first few), with a "
                                                       "progress line for big files")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.runs import prepare_run

    prep = prepare_run(run_request(args), check=True, full_check=args.full)
    spec = prep.spec
    print(f"{args.config}: ok for cluster {prep.profile.name} ({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s), "
          f"{spec.time})")
    for note in prep.notes:
        print(f"  {note}")
    return 0
