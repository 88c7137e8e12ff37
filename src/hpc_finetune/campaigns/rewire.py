"""Re-wiring a campaign's stage jobs when a job of it gets a new job id (`hpc-finetune requeue` of an ended run, of
a stage, or of a sweep's members as a new array).

``afterok`` waits through an in-place requeue (same job id), but a new job is a new id: every stage after it must
wait on the new one. A stage still pending gets ``scontrol update JobId=X Dependency=...`` (dev cluster, Slurm
22.05: works on a job pending with DependencyNeverSatisfied); one Slurm already cancelled for its failed dependency
(an ended job cannot be updated: "Job has already finished") gets a new job in its own run directory, its script
rendered again from its run.yaml and profile.yaml, its node program the one kept beside it (chain.save_program).

API::

    downstream(registry, rec) -> list[RunRecord]          the campaign's jobs waiting on ``rec``, in chain order
    downstream_of(registry, recs) -> list[RunRecord]      the same for several (a sweep's re-queued members)
    rewire_after_requeue(registry, rec) -> list[str]      ``rec`` has a new job: its stages wait on it
    rewire_after(registry, recs) -> list[str]             the same for several new jobs (a new array's tasks)
    stage_dependency(kind, job_ids) -> str                what a stage waits on (afterany: whole arrays)
    requeue_stage(registry, rec) -> list[str]             `requeue` of a stage job (in place, or a new job)
    resubmit_stage(registry, scheduler, rec, dependency)  a new job for an ended stage, recorded as a requeue
"""

from __future__ import annotations

from pathlib import Path

from hpc_finetune import layout
from hpc_finetune.campaigns.chain import dependency_value, load_program, with_dependency
from hpc_finetune.errors import UserError
from hpc_finetune.files import write_atomic
from hpc_finetune.jobspec import resolve
from hpc_finetune.records import Registry, RunRecord, Segment, load_record, now
from hpc_finetune.scheduler.base import Scheduler
from hpc_finetune.states import LIVE, PENDING, RUNNING


def downstream(registry: Registry, rec: RunRecord) -> list[RunRecord]:
    """The campaign's jobs that wait on ``rec``, directly or through others, in chain order."""
    return downstream_of(registry, [rec])


def downstream_of(registry: Registry, recs: list[RunRecord]) -> list[RunRecord]:
    """The campaign's jobs that wait on any of ``recs`` (one campaign's), directly or through others, in chain
    order; none of ``recs`` themselves."""
    if not recs or not recs[0].campaign:
        return []
    from hpc_finetune.records import UnreadableRecord

    records = []
    for row in registry.campaign_rows(recs[0].campaign):
        try:
            records.append(RunRecord.load(Path(row["run_dir"])))
        except UnreadableRecord:
            continue
    frontier = {r.run_id for r in recs}
    out = []
    for r in records:  # created in chain order: a job is queued after the ones it waits on
        if r.run_id not in {x.run_id for x in recs} and frontier & set(r.after):
            out.append(r)
            frontier.add(r.run_id)
    return out


def stage_dependency(kind: str, job_ids: list[str]) -> str:
    """What a stage waits on. An ``afterany`` stage (select) waits on whole arrays: a member's array task id becomes
    its array's id (every task of a campaign's array is one of its members, and an ended task satisfies afterany),
    so a select after a re-queued sweep waits on ``afterany:OLD:NEW``, not on one entry per member."""
    from hpc_finetune.campaigns.arrays import array_of, is_task
    from hpc_finetune.campaigns.stages import STAGES

    if kind in STAGES and STAGES[kind].after_any:
        job_ids = [array_of(j) if is_task(j) else j for j in job_ids]
    return dependency_value(kind, list(dict.fromkeys(job_ids)))


def rewire_after_requeue(registry: Registry, rec: RunRecord) -> list[str]:
    """``rec`` has a new job (``hpc-finetune requeue`` of an ended run): every stage after it waits on that job."""
    return rewire_after(registry, [rec])


def rewire_after(registry: Registry, recs: list[RunRecord]) -> list[str]:
    """``recs`` (one campaign's runs) each have a new job (``requeue`` of an ended run; of a sweep's members, as the
    tasks of one new array): every stage after them waits on those jobs, and on the live jobs it waited on besides.
    A stage still pending gets ``scontrol update JobId=X Dependency=afterok:NEW`` (dev cluster: works on a job
    pending with DependencyNeverSatisfied); one that ended (it ran, or Slurm cancelled it for the failed dependency:
    an ended job cannot be updated, "Job has already finished") gets a new job in its run directory, so a select
    that chose among the first members chooses again. Returns lines to print."""
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import refresh

    later = downstream_of(registry, recs)
    if not later:
        return []
    rec = recs[0]
    refresh(registry, later)
    by_id = {**{r.run_id: r for r in recs}, **{r.run_id: r for r in later}}
    lines = []
    if rec.scheduler == "local":
        from hpc_finetune.campaigns.localchain import start_runner

        for r in later:
            if r.state not in LIVE:
                r.state, r.reason = PENDING, ""
                r.save()
                registry.upsert(r)
        start_runner(Path(rec.run_dir).parent / rec.campaign, [*recs, *later], max_parallel=0)
        return [f"  stage {r.run_id} ({r.kind}) will run after it again" for r in later]
    scheduler = get_scheduler(rec.scheduler)
    # what a stage also waits on outside this re-wired tail (a select job: the sweep's other members) stays in its
    # dependency while still live; an ended one is satisfied already (and may be gone from Slurm's memory)
    others: dict[str, RunRecord] = {}
    for r in later:
        for a in r.after:
            if a not in by_id and a not in others:
                try:
                    others[a] = load_record(registry, a)
                except UserError:
                    continue
    if others:
        refresh(registry, list(others.values()))
    for r in later:
        deps = [by_id[a].job_id for a in r.after if a in by_id]
        deps += [others[a].job_id for a in r.after
                 if a in others and others[a].state in LIVE and others[a].job_id]
        dependency = stage_dependency(r.kind, deps)
        if r.state in LIVE and r.state != RUNNING and r.segments:
            from hpc_finetune.scheduler.slurm import run as slurm_run

            try:
                slurm_run(["scontrol", "update", f"JobId={r.job_id}", f"Dependency={dependency}"], "requeue")
            except UserError:
                pass  # it left the queue since the refresh (started, or Slurm cancelled it): a new job below
            else:
                r.dependency = dependency
                r.save()
                registry.upsert(r)
                lines.append(f"  stage {r.run_id} ({r.kind}): job {r.job_id} now waits on {dependency}")
                continue
        # ended, or running on what came before (a select over the old array): a new job after the new one; Slurm
        # refuses to change a running job's dependency ("Job is no longer pending")
        job_id = resubmit_stage(registry, scheduler, r, dependency)
        lines.append(f"  stage {r.run_id} ({r.kind}): new job {job_id}, waits on {dependency}")
    return lines


def requeue_stage(registry: Registry, rec: RunRecord) -> list[str]:
    """`hpc-finetune requeue` of a chain's stage job: a running one is requeued in place; an ended one gets a new job
    in its run directory, waiting on the jobs before it that have not completed yet; the stages after it are
    re-wired to it. Returns lines to print."""
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.states import REQUEUEABLE, RUNNING
    from hpc_finetune.tracking import refresh

    refresh(registry, [rec])
    if rec.state in LIVE and rec.segments:
        if rec.state == RUNNING:
            get_scheduler(rec.scheduler).requeue_running(rec.job_id)
            return [f"requeued running job {rec.job_id} of {rec.kind} stage {rec.run_id}"]
        raise UserError(f"run {rec.run_id} is {rec.state} (job {rec.job_id}); it will start on its own",
                        source="requeue")
    if rec.segments and rec.state not in REQUEUEABLE:
        raise UserError(f"run {rec.run_id} is {rec.state}; only stage jobs that ended as "
                        f"{', '.join(sorted(REQUEUEABLE))} can be requeued", source="requeue")
    if rec.scheduler == "local":
        rec.state, rec.reason = PENDING, ""
        rec.save()
        registry.upsert(rec)
        later = downstream(registry, rec)
        for r in later:
            r.state, r.reason = PENDING, ""
            r.save()
            registry.upsert(r)
        from hpc_finetune.campaigns.localchain import start_runner

        start_runner(Path(rec.run_dir).parent / rec.campaign, [rec, *later], max_parallel=0)
        return [f"{rec.kind} stage {rec.run_id}: queued again (the local runner starts it)"]
    before = []
    for a in rec.after:
        try:
            before.append(RunRecord.load(Path(rec.run_dir).parent / a))
        except UserError:
            continue
    refresh(registry, before)
    dependency = stage_dependency(rec.kind, [b.job_id for b in before if b.job_id and b.state in LIVE])
    job_id = resubmit_stage(registry, get_scheduler(rec.scheduler), rec, dependency)
    lines = [f"{rec.kind} stage {rec.run_id}: new job {job_id}" + (f", waits on {dependency}" if dependency else "")]
    return lines + rewire_after_requeue(registry, rec)


def resubmit_stage(registry: Registry, scheduler: Scheduler, rec: RunRecord, dependency: str) -> str:
    """A new job for an ended stage in its own run directory (script rendered again, waiting on ``dependency``;
    the node program kept beside it), recorded as a requeue. Returns the job id."""
    run_dir = Path(rec.run_dir)
    script = restage_script(run_dir, dependency)
    job_id = scheduler.submit(run_dir, script, load_program(run_dir), time_seconds=rec.time_seconds,
                              max_requeues=0)
    write_atomic(run_dir / layout.JOB_SCRIPT, script)
    rec.segments.append(Segment(job_id=job_id, started_by="requeue", submitted=now()))
    rec.state, rec.reason, rec.dependency = PENDING, "", dependency
    rec.requeues += 1
    rec.save()
    registry.upsert(rec)
    return job_id


def restage_script(run_dir: Path, dependency: str) -> str:
    """A stage job's script rendered again from its own run.yaml and profile.yaml, waiting on ``dependency``."""
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.render import job_script
    from hpc_finetune.runconfig import load_run_config

    profile = load_profile_file(run_dir / layout.PROFILE_YAML)
    cfg = load_run_config(run_dir / layout.RUN_YAML)
    spec = with_dependency(resolve(profile, cfg, run_dir, source=str(run_dir / layout.RUN_YAML)), dependency)
    return job_script(profile, spec)
