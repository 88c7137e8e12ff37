"""``hpc-finetune cancel RUN``: cancel the run's live job."""

from __future__ import annotations

import argparse

from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry
from hpc_finetune.states import LIVE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: every live job of it")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.store import is_campaign
    from hpc_finetune.records import Registry

    if is_campaign(Registry(), args.run):  # a whole campaign
        from hpc_finetune.campaigns.actions import cancel_named

        print(cancel_named(Registry(), args.run))
        return 0
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import current

    rec = current(Registry(), args.run)
    if rec.state not in LIVE:
        raise UserError(f"run {rec.run_id} is already {rec.state}; nothing to cancel", source="cancel")
    get_scheduler(rec.scheduler).cancel(rec.job_id, rec.path.parent)
    rec.reason = "cancelled by user"
    rec.save()
    print(f"cancelled job {rec.job_id} of run {rec.run_id}")
    return 0
