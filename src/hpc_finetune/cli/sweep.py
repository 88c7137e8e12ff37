"""``hpc-finetune sweep RUN.yaml --grid KEY=V1,V2 ...``: a grid of runs as one Slurm job array (one campaign)."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_grid_arguments, add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the member table (stderr) and the array script "
                                                          "(stdout); submit nothing")
    p.add_argument("--no-check", action="store_true", help="skip the pre-flight `check`")


def request(args: argparse.Namespace):
    from hpc_finetune.campaigns.sweep import SweepRequest
    from hpc_finetune.cli.common import FLAGS

    flags = {key: (f"--{flag}", getattr(args, flag, None)) for flag, key in FLAGS.items()}
    return SweepRequest(config=args.config, sets=list(args.set), flags=flags, grid=list(args.grid),
                        seeds=args.seeds, max_parallel=args.max_parallel, name=args.name,
                        check=not getattr(args, "no_check", True))


def dry_run(args: argparse.Namespace, *, check: bool) -> int:
    """The member table on stderr and the array script, byte for byte, on stdout (`sweep --dry-run`, `render`)."""
    from hpc_finetune.campaigns.sweep import member_table, plan_sweep
    from hpc_finetune.cli.common import load_with_flags
    from hpc_finetune.records import Registry

    profile, base = load_with_flags(args)
    req = request(args)
    req.check = check
    plan = plan_sweep(req, profile, base, Registry())
    for note in plan.notes:
        print(note, file=sys.stderr)
    print(f"# campaign {plan.campaign_id}: {len(plan.members)} member(s) as one job array on {profile.name}"
          + (f", at most {req.max_parallel} at once" if req.max_parallel else ""), file=sys.stderr)
    print(member_table(plan), file=sys.stderr)
    sys.stdout.write(plan.script)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return dry_run(args, check=not args.no_check)
    from hpc_finetune.campaigns.sweep import submit_sweep
    from hpc_finetune.cli.common import build, config_yaml, load_with_flags, profile_yaml
    from hpc_finetune.records import Registry
    from hpc_finetune.render import launch_files

    registry = Registry()
    profile, base = load_with_flags(args)
    if profile.scheduler != "slurm":
        from hpc_finetune.errors import UserError

        raise UserError(f"cluster {profile.name!r} has no Slurm: sweeps run as Slurm job arrays (a local sweep "
                        "needs the local runner)", source="sweep")
    req = request(args)

    def prepare_member(profile, cfg, run_dir):
        return build(profile, cfg, run_dir, source=str(args.config))

    def files_for(prep):
        return {"run.yaml": config_yaml(prep.cfg), "profile.yaml": profile_yaml(prep.profile), "job.sh": prep.script,
                **launch_files(prep.cfg, prep.spec)}

    campaign, records = submit_sweep(req, profile, base, registry, files_for=files_for,
                                     prepare_member=prepare_member)
    spec = records[0]
    print(f"submitted campaign {campaign.campaign_id}: {len(records)} member(s) as job array {campaign.array_job_id} "
          f"on {profile.name} ({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s) each"
          + (f", at most {campaign.max_parallel} at once)" if campaign.max_parallel else ")"))
    keys = list(campaign.members[0].values)
    rows = [["JOB", "RUN", *keys]] + [[f"{campaign.array_job_id}_{m.index}", m.run_id, *(m.values[k] for k in keys)]
                                      for m in campaign.members]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"  campaign folder: {campaign.campaign_dir}")
    print(f"  follow it:       hpc-finetune status {campaign.campaign_id}   |   "
          f"hpc-finetune compare {campaign.campaign_id}")
    return 0
