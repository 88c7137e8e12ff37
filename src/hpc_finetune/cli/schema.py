"""``hpc-finetune schema run|profile``: every field with its type, default and one line of help."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=["run", "profile"], help="the run config or the cluster profile")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.profile import ClusterProfile
    from hpc_finetune.runconfig import RunConfig
    from hpc_finetune.schema import describe

    for key, tp, default, help_text in describe(RunConfig if args.which == "run" else ClusterProfile):
        if key == "path":
            continue
        if tp == "section":
            print(f"\n{key}:  {help_text}")
        else:
            print(f"  {key:<44} {tp:<28} default {default!r:<14} {help_text}")
    return 0
