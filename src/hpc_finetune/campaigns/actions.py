"""`cancel` and `requeue` of a whole campaign (one member goes through the ordinary run path: its job id is the
array task's, ``6_0``, which scancel and scontrol take as they are)."""

from __future__ import annotations

from pathlib import Path

from hpc_finetune.campaigns.store import Campaign
from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry, RunRecord, Segment, now
from hpc_finetune.states import LIVE, REQUEUEABLE


def cancel_campaign(registry: Registry, campaign: Campaign, records: list[RunRecord]) -> list[str]:
    """Cancel every live job of the campaign: its array once by the array's id (pending tasks included), any other
    live job by its own id. Returns the ids cancelled."""
    from hpc_finetune.campaigns.arrays import array_of, is_task
    from hpc_finetune.scheduler import get_scheduler

    live = [r for r in records if r.state in LIVE and r.job_id]
    if not live:
        raise UserError(f"campaign {campaign.campaign_id} has no live job; nothing to cancel", source="cancel")
    scheduler = get_scheduler(campaign.scheduler)
    ids = list(dict.fromkeys(array_of(r.job_id) if is_task(r.job_id) else r.job_id for r in live))
    for job_id in ids:
        scheduler.cancel(job_id, Path(campaign.campaign_dir))
    for rec in live:
        rec.reason = "cancelled by user"
        rec.save()
        registry.upsert(rec)
    return ids


def requeue_campaign(registry: Registry, campaign: Campaign, records: list[RunRecord]) -> tuple[str, list[RunRecord]]:
    """Start the members that ended without completing (failed, timeout, cancelled, stopped...) again, as ONE new
    array of just those tasks (the campaign's array.sh, same --max-parallel), each resuming from its newest complete
    checkpoint in its own run directory. Completed, running and pending members are left alone."""
    from hpc_finetune.campaigns.sweep import ARRAY_SCRIPT
    from hpc_finetune.scheduler import get_scheduler

    if campaign.kind != "sweep" or not campaign.array_job_id:
        raise UserError(f"campaign {campaign.campaign_id} is not a sweep; requeue its runs one by one",
                        source="requeue")
    again = [r for r in records if r.kind == "train" and r.member is not None and r.state in REQUEUEABLE]
    if not again:
        raise UserError(f"no member of campaign {campaign.campaign_id} ended without completing; nothing to requeue "
                        "(a running member: `hpc-finetune requeue MEMBER`)", source="requeue")
    indices = ",".join(str(r.member) for r in again)
    if campaign.max_parallel:
        indices += f"%{campaign.max_parallel}"
    array_id = get_scheduler(campaign.scheduler).submit_array(
        Path(campaign.campaign_dir) / ARRAY_SCRIPT, [], time_seconds=again[0].time_seconds, max_requeues=0,
        indices=indices)
    submitted = now()
    for rec in again:
        rec.segments.append(Segment(job_id=f"{array_id}_{rec.member}", started_by="requeue", submitted=submitted))
        rec.state, rec.reason = "pending", ""
        rec.requeues += 1
        rec.save()
        registry.upsert(rec)
    return array_id, again


def cancel_named(registry: Registry, name: str) -> str:
    """`cancel CAMPAIGN`: what to print."""
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.tracking import refresh

    campaign, records = open_campaign(registry, name)
    refresh(registry, records)
    ids = cancel_campaign(registry, campaign, records)
    return f"cancelled campaign {campaign.campaign_id}: job(s) {', '.join(ids)}"


def requeue_named(registry: Registry, name: str) -> str:
    """`requeue CAMPAIGN`: what to print."""
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.tracking import refresh

    campaign, records = open_campaign(registry, name)
    refresh(registry, records)
    array_id, again = requeue_campaign(registry, campaign, records)
    return (f"campaign {campaign.campaign_id}: {len(again)} member(s) again as job array {array_id}: "
            + ", ".join(f"{r.run_id} ({r.job_id})" for r in again))
