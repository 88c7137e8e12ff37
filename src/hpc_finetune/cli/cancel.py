"""``hpc-finetune cancel RUN``: cancel the run's live job."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: every live job of it")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.store import is_campaign
    from hpc_finetune.records import Registry

    if is_campaign(Registry(), args.run):  # a whole campaign
        from hpc_finetune.campaigns.actions import cancel_named

        print(cancel_named(Registry(), args.run))
        return 0
    from hpc_finetune.runs import cancel_run

    rec = cancel_run(args.run)
    print(f"cancelled job {rec.job_id} of run {rec.run_id}" if rec.job_id else
          f"cancelled run {rec.run_id} before its job started (the local runner will not start it)")
    return 0
