"""``hpc-finetune requeue RUN``: requeue a running job, or start a new job for an ended run (same run dir)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory; or a campaign id: its members that ended "
                               "without completing, again as one job array")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.store import is_campaign
    from hpc_finetune.records import Registry, load_record

    if is_campaign(Registry(), args.run):  # a whole campaign: its members that did not complete
        from hpc_finetune.campaigns.actions import requeue_named

        print(requeue_named(Registry(), args.run))
        return 0
    from hpc_finetune.runs import requeue_run

    registry = Registry()
    first = load_record(registry, args.run)
    if first.campaign and first.kind != "train":  # a chain's stage job: again, after what it waits on
        from hpc_finetune.campaigns.chain import requeue_stage

        for line in requeue_stage(registry, first):
            print(line)
        return 0
    done = requeue_run(args.run, registry=registry)
    rec = done.record
    if done.in_place:
        print(f"requeued running job {rec.job_id} of run {rec.run_id}; it resumes from its last checkpoint")
        return 0
    history = ", ".join(s.job_id for s in rec.segments)
    print(f"run {rec.run_id}: new job {done.job_id} in the same run directory (jobs so far: {history})")
    if rec.campaign:  # a chain's training: its stages now wait on the new job
        from hpc_finetune.campaigns.chain import rewire_after_requeue

        for line in rewire_after_requeue(registry, rec):
            print(line)
    return 0
