"""``hpc-finetune cancel RUN``: cancel the run's live job."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: every live job of it")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.actions import cancel
    from hpc_finetune.records import Registry

    print(cancel(Registry(), args.run))
    return 0
