"""``hpc-finetune submit RUN.yaml``: render, check, write the run directory, submit, record."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
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
    from hpc_finetune.records import Registry, RunRecord, Segment, claim_run_dir, now, write_atomic
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
    from hpc_finetune.scheduler import get_scheduler

    with _terminate_as_exception():
        _TERM["deferred"] = True  # a signal between mkdir and the try below must not leave the directory behind
        run_dir = claim_run_dir(registry, runs_root(profile), cfg.name)  # atomic: ours alone from here
        try:
            _TERM["deferred"] = False
            if _TERM.pop("pending", None):
                raise SystemExit(143)
            prep = prepare(args, registry, (profile, cfg), run_dir=run_dir)
            spec = prep.spec
            write_atomic(spec.run_dir / "run.yaml", config_yaml(prep.cfg))
            write_atomic(spec.run_dir / "profile.yaml", profile_yaml(prep.profile))
            write_atomic(spec.run_dir / "job.sh", prep.script)
            for name, text in launch_files(prep.cfg, spec).items():
                write_atomic(spec.run_dir / name, text)
            rec = RunRecord(run_id=spec.run_id, name=prep.cfg.name, cluster=prep.profile.name,
                            scheduler=prep.profile.scheduler, run_dir=str(spec.run_dir),
                            output_dir=str(spec.output_dir), created=now(), nodes=spec.nodes,
                            gpus_per_node=spec.gpus_per_node, processes_per_node=spec.processes_per_node,
                            time_seconds=spec.time_seconds)
            rec.save()
            # from here a signal waits: the scheduler may accept the job, which must then be recorded whole
            _TERM["deferred"] = True
            job_id = get_scheduler(prep.profile.scheduler).submit(
                spec.run_dir, prep.script, prep.program, time_seconds=spec.time_seconds,
                max_requeues=prep.profile.max_requeues)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written: the directory was ours alone
            raise
        rec.segments.append(Segment(job_id=job_id, started_by="submit", submitted=now()))
        rec.save()
        registry.upsert(rec)
    print(f"submitted run {spec.run_id} as job {job_id} on {prep.profile.name} "
          f"({spec.nodes} node(s) x {spec.gpus_per_node} GPU(s), limit {spec.time})")
    print(f"  run directory: {spec.run_dir}")
    print(f"  follow it:     hpc-finetune status {spec.run_id}   |   hpc-finetune logs -f {spec.run_id}")
    if args.wait:
        return wait(registry, rec)
    return 0


_TERM: dict = {}


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM (and SIGHUP) while a run directory is being written raise SystemExit, so the cleanup above runs;
    while the scheduler takes the job, and until the job is recorded, they are held, then honoured (exit 128+N):
    a submit killed mid-way leaves either nothing or a whole, recorded run, never an empty directory."""

    def handler(signum, frame):  # noqa: ARG001
        if _TERM.get("deferred"):
            _TERM["pending"] = signum
            return
        raise SystemExit(128 + signum)

    sigs = (signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    _TERM.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pending = _TERM.pop("pending", None)
        _TERM.clear()
        if pending:
            raise SystemExit(128 + pending)


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
