"""``hpc-finetune sweep RUN.yaml --grid KEY=V1,V2 ...``: a grid of runs as one Slurm job array (one campaign)."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_grid_arguments, add_run_arguments, add_stage_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the member table (stderr) and the array script "
                                                          "(stdout); submit nothing")
    p.add_argument("--no-check", action="store_true", help="skip the pre-flight `check`")
    add_stage_arguments(p, sweep=True)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns.sweep import dry_run_note, plan_sweep, submit_sweep, sweep_request
    from hpc_finetune.records import Registry

    registry = Registry()
    req = sweep_request(args, check=not args.no_check)
    if args.dry_run:
        plan = plan_sweep(req, registry)
        for note in plan.notes:
            print(note, file=sys.stderr)
        print(dry_run_note(plan), file=sys.stderr)
        from hpc_finetune.campaigns.chain import describe_prepares, options_from_args

        stages = options_from_args(args)
        if stages is not None:
            print(describe_prepares(plan, stages), file=sys.stderr)
        sys.stdout.write(plan.script)
        return 0
    from hpc_finetune.campaigns.chain import options_from_args, sweep_with_stages

    stages = options_from_args(args)
    stage_jobs = []
    if stages is not None:
        campaign, records, stage_jobs = sweep_with_stages(req, registry, stages)
    else:
        campaign, records = submit_sweep(req, registry)
    first = records[0]
    how = f"as job array {campaign.array_job_id}" if campaign.array_job_id else "for the local runner"
    print(f"submitted campaign {campaign.campaign_id}: {len(records)} member(s) {how} "
          f"on {campaign.cluster} ({first.nodes} node(s) x {first.gpus_per_node} GPU(s) each"
          + (f", at most {campaign.max_parallel} at once)" if campaign.max_parallel else ")"))
    keys = list(campaign.members[0].values)
    rows = [["JOB", "RUN", *keys]] + [[f"{campaign.array_job_id}_{m.index}" if campaign.array_job_id else "-",
                                       m.run_id, *(m.values[k] for k in keys)] for m in campaign.members]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for r in stage_jobs:
        print(f"  {r.kind:8s} {r.run_id}  " + (f"job {r.job_id}" if r.job_id else "held")
              + (f"  {r.dependency}" if r.dependency else "") + (f"  after {', '.join(r.after)}" if r.after and not r.dependency else ""))
    print(f"  campaign folder: {campaign.campaign_dir}")
    print(f"  follow it:       hpc-finetune status {campaign.campaign_id}   |   "
          f"hpc-finetune compare {campaign.campaign_id}")
    return 0
