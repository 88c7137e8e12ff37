"""``hpc-finetune cancel RUN``: cancel the run's live job."""

from __future__ import annotations

import argparse

from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry
from hpc_finetune.states import LIVE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: every live job of it")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.status import _campaign_name
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import current, refresh

    registry = Registry()
    if _campaign_name(registry, args.run):
        from hpc_finetune.campaigns.actions import cancel_campaign
        from hpc_finetune.campaigns.store import open_campaign

        campaign, records = open_campaign(registry, args.run)
        refresh(registry, records)
        ids = cancel_campaign(registry, campaign, records)
        print(f"cancelled campaign {campaign.campaign_id}: job(s) {', '.join(ids)}")
        return 0
    rec = current(registry, args.run)
    if rec.state not in LIVE:
        raise UserError(f"run {rec.run_id} is already {rec.state}; nothing to cancel", source="cancel")
    get_scheduler(rec.scheduler).cancel(rec.job_id, rec.path.parent)
    rec.reason = "cancelled by user"
    rec.save()
    print(f"cancelled job {rec.job_id} of run {rec.run_id}")
    return 0
