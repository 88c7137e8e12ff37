"""``hpc-finetune requeue RUN``: requeue a running job, or start a new job for an ended run (same run dir)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry, Segment, now
from hpc_finetune.states import LIVE, REQUEUEABLE, RUNNING


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.common import build
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import current

    registry = Registry()
    rec = current(registry, args.run)
    scheduler = get_scheduler(rec.scheduler)
    if rec.kind != "train" and rec.campaign:
        from hpc_finetune.campaigns.chain import requeue_stage

        for line in requeue_stage(registry, rec):
            print(line)
        return 0
    if rec.kind != "train":
        raise UserError(f"run {rec.run_id} is an {rec.kind} job; run `hpc-finetune {rec.kind} ... --submit` again "
                        "instead of requeuing it", source="requeue")
    if rec.state == RUNNING:
        scheduler.requeue_running(rec.job_id)
        print(f"requeued running job {rec.job_id} of run {rec.run_id}; it resumes from its last checkpoint")
        return 0
    if rec.state in LIVE:
        raise UserError(f"run {rec.run_id} is {rec.state} (job {rec.job_id}); it will start on its own",
                        source="requeue")
    if rec.state not in REQUEUEABLE:
        raise UserError(f"run {rec.run_id} is {rec.state}; only runs that ended as "
                        f"{', '.join(sorted(REQUEUEABLE))} can be requeued", source="requeue")
    run_dir = Path(rec.run_dir)
    profile = load_profile_file(run_dir / "profile.yaml")
    cfg = load_run_config(run_dir / "run.yaml")
    prep = build(profile, cfg, run_dir, source=str(run_dir / "run.yaml"))
    # a chain's training waited on its prepare job, which has ended: the new job waits on nothing
    script = prep.script if rec.dependency else (run_dir / "job.sh").read_text()
    job_id = scheduler.submit(run_dir, script, prep.program, time_seconds=prep.spec.time_seconds,
                              max_requeues=profile.max_requeues)
    rec.segments.append(Segment(job_id=job_id, started_by="requeue", submitted=now()))
    rec.state, rec.reason = "pending", ""
    rec.requeues += 1
    rec.save()
    registry.upsert(rec)
    history = ", ".join(s.job_id for s in rec.segments)
    print(f"run {rec.run_id}: new job {job_id} in the same run directory (jobs so far: {history})")
    if rec.campaign:
        from hpc_finetune.campaigns.chain import rewire_after_requeue

        for line in rewire_after_requeue(registry, rec):  # its stages now wait on the new job
            print(line)
    return 0
