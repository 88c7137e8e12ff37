"""``hpc-finetune submit RUN.yaml``: render, check, write the run directory, submit, record."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the job script and what would be written; submit "
                                                          "nothing")
    p.add_argument("--wait", action="store_true", help="wait until the run ends, then show its status")
    p.add_argument("--no-check", action="store_true", help="skip the pre-flight `check`")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.common import config_yaml, load_with_flags, prepare, profile_yaml
    from hpc_finetune.jobspec import runs_root
    from hpc_finetune.records import Registry, RunRecord, now
    from hpc_finetune.render import launch_files
    registry = Registry()
    profile, cfg = load_with_flags(args)
    if not args.no_check:  # every problem at once, before a run id or directory exists
        from hpc_finetune.check import raise_problems

        _, notes = raise_problems(cfg, profile, runs_root(profile) / "check", config_source=str(args.config))
        for note in notes:  # how much of the data was read (a dry run's stdout stays the job script alone)
            if note.startswith("data:"):
                print(note, file=sys.stderr if args.dry_run else sys.stdout)
    if args.dry_run:
        prep = prepare(args, registry, (profile, cfg))
        sys.stdout.write(prep.script)
        print(f"# dry run: would create {prep.spec.run_dir} with run.yaml, profile.yaml, job.sh"
              + "".join(f", {name}" for name in launch_files(prep.cfg, prep.spec)), file=sys.stderr)
        return 0
    from hpc_finetune.runs import NewRun, create_run

    built = {}

    def build(run_dir):
        prep = built["prep"] = prepare(args, registry, (profile, cfg), run_dir=run_dir)
        spec = prep.spec
        files = {"run.yaml": config_yaml(prep.cfg), "profile.yaml": profile_yaml(prep.profile), "job.sh": prep.script,
                 **launch_files(prep.cfg, spec)}
        rec = RunRecord(run_id=spec.run_id, name=prep.cfg.name, cluster=prep.profile.name,
                        scheduler=prep.profile.scheduler, run_dir=str(spec.run_dir), output_dir=str(spec.output_dir),
                        created=now(), nodes=spec.nodes, gpus_per_node=spec.gpus_per_node,
                        processes_per_node=spec.processes_per_node, time_seconds=spec.time_seconds)
        return NewRun(record=rec, script=prep.script, program=prep.program, max_requeues=prep.profile.max_requeues,
                      files=files)

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
