"""`cancel` and `requeue` of a whole campaign (one member goes through the ordinary run path: its job id is the
array task's, ``6_0``, which scancel and scontrol take as they are)."""

from __future__ import annotations

from pathlib import Path

from hpc_finetune.campaigns.store import Campaign
from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry, RunRecord, Segment, now
from hpc_finetune.states import CANCELLED, LIVE, PENDING, REQUEUEABLE


def cancel_campaign(registry: Registry, campaign: Campaign, records: list[RunRecord]) -> list[str]:
    """Cancel every live job of the campaign: its array once by the array's id (pending tasks included), any other
    live job by its own id. Returns the ids cancelled."""
    from hpc_finetune.campaigns.arrays import array_of, is_task
    from hpc_finetune.scheduler import get_scheduler

    runners = 0
    if campaign.scheduler == "local":  # the detached runner(s) holding its not-yet-started jobs go first
        from hpc_finetune.job.runner import cancel as cancel_runner

        runners = sum(bool(cancel_runner(folder)) for folder in sorted(Path(campaign.campaign_dir).glob("runner*")))
    held = [r for r in records if r.state in LIVE and not r.segments]  # never started: nothing to scancel
    for rec in held:
        rec.state, rec.reason = CANCELLED, "cancelled by user"
        rec.save()
        registry.upsert(rec)
    live = [r for r in records if r.state in LIVE and r.job_id]
    if not live and not held and not runners:
        raise UserError(f"campaign {campaign.campaign_id} has no live job; nothing to cancel", source="cancel")
    scheduler = get_scheduler(campaign.scheduler)
    ids = list(dict.fromkeys(array_of(r.job_id) if is_task(r.job_id) else r.job_id for r in cancel_order(live)))
    for job_id in ids:
        scheduler.cancel(job_id, Path(campaign.campaign_dir))
    for rec in live:
        rec.reason = "cancelled by user"
        rec.save()
        registry.upsert(rec)
    return ids


def cancel_order(live: list[RunRecord]) -> list[RunRecord]:
    """The order to cancel a campaign's live jobs in: the stages that wait on others first, the last of the chain
    first (a select job waits ``afterany`` on the array: cancelling the array first would let it start), then the
    members, then what they wait on (the prepare job)."""
    by_age = sorted(live, key=lambda r: r.created)
    stages = [r for r in by_age if r.kind != "train" and r.after]
    members = [r for r in by_age if r.kind == "train"]
    rest = [r for r in by_age if r not in stages and r not in members]
    return [*reversed(stages), *members, *rest]


def requeue_campaign(registry: Registry, campaign: Campaign,
                     records: list[RunRecord]) -> tuple[str, list[RunRecord], list[str]]:
    """Start the members that ended without completing (failed, timeout, cancelled, stopped...) again, as ONE new
    array of just those tasks (the campaign's array.sh without its wait on the prepare job, written as
    array-requeue-N.sh; same --max-parallel), each resuming from its newest complete checkpoint in its own run
    directory. Completed, running and pending members are left alone. The stages after the members (a select and
    its tail, or each re-queued member's own chain) are re-wired to the new array (rewire.rewire_after).
    Returns (new array id, the members again, lines to print about the stages)."""
    from hpc_finetune.campaigns.arrayscript import without_wait
    from hpc_finetune.campaigns.rewire import rewire_after
    from hpc_finetune.campaigns.sweep import ARRAY_SCRIPT
    from hpc_finetune.files import write_atomic
    from hpc_finetune.scheduler import get_scheduler

    if campaign.kind == "sweep" and campaign.scheduler == "local":
        raise UserError(f"campaign {campaign.campaign_id} runs on the local profile, where `requeue CAMPAIGN` is "
                        "not supported; requeue its members one by one (`hpc-finetune requeue MEMBER`)",
                        source="requeue")
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
    campaign_dir = Path(campaign.campaign_dir)
    n = 1
    while (campaign_dir / f"array-requeue-{n}.sh").exists():
        n += 1
    script = campaign_dir / f"array-requeue-{n}.sh"  # what this requeue submitted, beside the first array.sh
    write_atomic(script, without_wait((campaign_dir / ARRAY_SCRIPT).read_text()))
    array_id = get_scheduler(campaign.scheduler).submit_array(script, [], time_seconds=again[0].time_seconds,
                                                              max_requeues=0, indices=indices)
    submitted = now()
    for rec in again:
        rec.segments.append(Segment(job_id=f"{array_id}_{rec.member}", started_by="requeue", submitted=submitted))
        # the new array waits on nothing: no prepare job either (a failed one would otherwise show the member as
        # "skipped: prepare failed" in status, campaigns/skipping.py reads `after`)
        rec.state, rec.reason, rec.dependency, rec.after = PENDING, "", "", []
        rec.requeues += 1
        rec.save()
        registry.upsert(rec)
    return array_id, again, rewire_after(registry, again)


def cancel_named(registry: Registry, name: str) -> str:
    """`cancel CAMPAIGN`: what to print."""
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.tracking import refresh

    campaign, records = open_campaign(registry, name)
    refresh(registry, records)
    ids = cancel_campaign(registry, campaign, records)
    return f"cancelled campaign {campaign.campaign_id}: " + (f"job(s) {', '.join(ids)}" if ids else
                                                               "nothing had started; no job will start")


def requeue_named(registry: Registry, name: str) -> str:
    """`requeue CAMPAIGN`: what to print."""
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.tracking import refresh

    campaign, records = open_campaign(registry, name)
    refresh(registry, records)
    if campaign.kind == "chain":
        return "\n".join(requeue_chain(registry, campaign, records))
    array_id, again, lines = requeue_campaign(registry, campaign, records)
    return "\n".join([f"campaign {campaign.campaign_id}: {len(again)} member(s) again as job array {array_id}: "
                      + ", ".join(f"{r.run_id} ({r.job_id})" for r in again), *lines])


def chain_root(records: list[RunRecord]) -> RunRecord | None:
    """The job of a chain that broke it: the first (oldest) one that ended without completing and is not shown as
    skipped (the jobs after it only never ran because of it)."""
    from hpc_finetune.campaigns.skipping import ChainJob, is_skipped, shown_states
    from hpc_finetune.campaigns.stages import STAGES

    jobs = [ChainJob(r.run_id, r.kind, str(r.state), tuple(r.after),
                     after_any=STAGES[r.kind].after_any if r.kind in STAGES else False) for r in records]
    shown = shown_states(jobs)
    broken = [r for r in records if r.state in REQUEUEABLE and not is_skipped(shown.get(r.run_id, ""))]
    return min(broken, key=lambda r: r.created) if broken else None


def requeue_chain(registry: Registry, campaign: Campaign, records: list[RunRecord]) -> list[str]:
    """`requeue CHAIN`: the job that broke the chain again (the training: a new job in its run directory, resuming
    from its checkpoint; a stage: `requeue_stage`), and every job after it re-wired to wait on it. Lines to print."""
    from hpc_finetune.campaigns.rewire import requeue_stage, rewire_after_requeue
    from hpc_finetune.runs import requeue_run

    root = chain_root(records)
    if root is None:
        raise UserError(f"no job of chain {campaign.campaign_id} ended without completing; nothing to requeue "
                        "(a running one: `hpc-finetune requeue RUN`)", source="requeue")
    if root.kind != "train":
        return requeue_stage(registry, root)
    done = requeue_run(root.run_id, registry=registry)
    rec = done.record
    lines = [f"run {rec.run_id}: new job {done.job_id} in the same run directory (jobs so far: "
             f"{', '.join(s.job_id for s in rec.segments)})"]
    return lines + rewire_after_requeue(registry, rec)


def requeue(registry: Registry, name: str) -> list[str]:
    """`hpc-finetune requeue NAME`, whatever NAME is: a campaign (its members that did not complete; a chain: the job
    that broke it), a chain's stage job, or a run (whose pending stages then wait on its new job). Lines to print."""
    from hpc_finetune.campaigns.rewire import requeue_stage, rewire_after_requeue
    from hpc_finetune.campaigns.store import is_campaign
    from hpc_finetune.records import load_record
    from hpc_finetune.runs import requeue_run

    if is_campaign(registry, name):
        return requeue_named(registry, name).splitlines()
    first = load_record(registry, name)
    if first.campaign and first.kind != "train":
        return requeue_stage(registry, first)
    done = requeue_run(name, registry=registry)
    rec = done.record
    if done.in_place:
        return [f"requeued running job {rec.job_id} of run {rec.run_id}; it resumes from its last checkpoint"]
    lines = [f"run {rec.run_id}: new job {done.job_id} in the same run directory (jobs so far: "
             f"{', '.join(s.job_id for s in rec.segments)})"]
    return lines + (rewire_after_requeue(registry, rec) if rec.campaign else [])


def cancel(registry: Registry, name: str) -> str:
    """`hpc-finetune cancel NAME`: a campaign (every live job of it) or one run. What to print."""
    from hpc_finetune.campaigns.store import is_campaign
    from hpc_finetune.runs import cancel_run

    if is_campaign(registry, name):
        return cancel_named(registry, name)
    rec = cancel_run(name, registry=registry)
    return (f"cancelled job {rec.job_id} of run {rec.run_id}" if rec.job_id else
            f"cancelled run {rec.run_id} before its job started (the local runner will not start it)")
