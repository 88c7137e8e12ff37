"""``hpc-finetune requeue RUN``: requeue a running job, or start a new job for an ended run (same run dir)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: its members that ended "
                               "without completing, again as one job array")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.actions import requeue
    from hpc_finetune.records import Registry

    for line in requeue(Registry(), args.run):
        print(line)
    return 0
