"""``hpc-finetune submit RUN.yaml``: render, check, write the run directory, submit, record."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_run_arguments, add_stage_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the job script and what would be written; submit "
                                                          "nothing")
    p.add_argument("--wait", action="store_true", help="wait until the run ends, then show its status")
    p.add_argument("--no-check", action="store_true", help="skip the pre-flight `check`")
    add_stage_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.common import config_yaml, load_with_flags, prepare, profile_yaml
    from hpc_finetune.jobspec import runs_root
    from hpc_finetune.records import Registry, RunRecord, now
    from hpc_finetune.render import launch_files
    from hpc_finetune.campaigns.chain import check_stages, options_from_args

    registry = Registry()
    profile, cfg = load_with_flags(args)
    stages = options_from_args(args)
    if stages is not None:  # every stage job resolved against the profile before anything is queued
        check_stages(profile, cfg, stages, str(args.config))
    if not args.no_check:  # every problem at once, before a run id or directory exists
        from hpc_finetune.check import raise_problems

        _, notes = raise_problems(cfg, profile, runs_root(profile) / "check", config_source=str(args.config))
        for note in notes:  # how much of the data was read (a dry run's stdout stays the job script alone)
            if note.startswith("data:"):
                print(note, file=sys.stderr if args.dry_run else sys.stdout)
    if args.dry_run:
        prep = prepare(args, registry, (profile, cfg))
        sys.stdout.write(prep.script)
        if stages is not None:
            from hpc_finetune.campaigns.stages import chain_of

            print("# dry run: would queue the chain " + " -> ".join(chain_of(stages.then, prepare=stages.prepare,
                                                                               select=False))
                  + " (each stage a job of its own, after the one before)", file=sys.stderr)
        print(f"# dry run: would create {prep.spec.run_dir} with run.yaml, profile.yaml, job.sh"
              + "".join(f", {name}" for name in launch_files(prep.cfg, prep.spec)), file=sys.stderr)
        return 0
    from hpc_finetune.runs import NewRun, create_run

    built = {}

    def build(run_dir, chain=None):
        """The training run; ``chain``: (campaign, the runs it waits on, the --dependency value) in a chain."""
        prep = built["prep"] = prepare(args, registry, (profile, cfg), run_dir=run_dir)
        spec = prep.spec
        campaign, after, dependency = chain or ("", [], "")
        if dependency:
            from hpc_finetune.campaigns.chain import with_dependency
            from hpc_finetune.render import job_script

            prep.script = job_script(prep.profile, with_dependency(spec, dependency))
        files = {"run.yaml": config_yaml(prep.cfg), "profile.yaml": profile_yaml(prep.profile), "job.sh": prep.script,
                 **launch_files(prep.cfg, spec)}
        rec = RunRecord(run_id=spec.run_id, name=prep.cfg.name, cluster=prep.profile.name,
                        scheduler=prep.profile.scheduler, run_dir=str(spec.run_dir), output_dir=str(spec.output_dir),
                        created=now(), nodes=spec.nodes, gpus_per_node=spec.gpus_per_node,
                        processes_per_node=spec.processes_per_node, time_seconds=spec.time_seconds,
                        campaign=campaign, after=list(after), dependency=dependency)
        return NewRun(record=rec, script=prep.script, program=prep.program, max_requeues=prep.profile.max_requeues,
                      files=files)

    if stages is not None:
        from hpc_finetune.campaigns.chain import print_chain, queue_chain

        campaign_dir, records = queue_chain(registry, profile, cfg, stages, build, source=str(args.config))
        print_chain(campaign_dir, records)
        if args.wait:
            return wait_chain(registry, records)
        return 0
    rec = create_run(registry, runs_root(profile), cfg.name, build)
    prep = built["prep"]
    spec, job_id = prep.spec, rec.job_id
    print(f"submitted run {spec.run_id} as job {job_id} on {prep.profile.name} "
          f"({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s), limit {spec.time})")
    print(f"  run directory: {spec.run_dir}")
    print(f"  follow it:     hpc-finetune status {spec.run_id}   |   hpc-finetune logs -f {spec.run_id}")
    if args.wait:
        return wait(registry, rec)
    return 0


def wait(registry, rec) -> int:
    """Poll until the run's job ends; print the status line; exit 0 only if it completed."""
    import time

    from hpc_finetune.cli.status import collect, table
    from hpc_finetune.states import COMPLETED, LIVE
    from hpc_finetune.tracking import refresh

    while True:
        refresh(registry, [rec])
        if rec.state not in LIVE:
            break
        time.sleep(2)
    print(table(collect(registry, rec.run_id)))
    if rec.state != COMPLETED:
        print(f"run {rec.run_id} ended {rec.state}; see `hpc-finetune logs {rec.run_id}`", file=sys.stderr)
        return 1
    return 0


def wait_chain(registry, records) -> int:
    """Poll until every job of the chain has ended (or was skipped); print their status; 0 only if all completed."""
    import time

    from hpc_finetune.cli.status import collect, table
    from hpc_finetune.states import COMPLETED, LIVE
    from hpc_finetune.tracking import refresh

    from pathlib import Path

    from hpc_finetune.records import RunRecord

    while True:
        records = [RunRecord.load(Path(r.run_dir)) for r in records]  # a local chain's runner writes them
        refresh(registry, records)
        if all(r.state not in LIVE for r in records):
            break
        time.sleep(2)
    rows = [row for r in records for row in collect(registry, r.run_id)]
    print(table(rows))
    bad = [r.run_id for r in records if r.state != COMPLETED]
    if bad:
        print(f"not completed: {', '.join(bad)}; see `hpc-finetune logs RUN`", file=sys.stderr)
        return 1
    return 0
