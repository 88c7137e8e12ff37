"""A chain on the local profile: the local runner (job/runner.py) owns it, and runs this module once per job.

``python -m hpc_finetune.campaigns.localchain run RUN_DIR`` submits the run's held job (its rendered job.sh and the
node program kept in ``jobs/program.pkl``) to the local scheduler, records the job like `submit` would (a segment,
the index), waits for it to end and exits 0 only if it completed: the runner then starts the jobs after it.
A run whose last job is still live (a run `requeue` gave a new job) is only waited for; one whose last job
ended (a stage requeued by hand) gets a new job. ``... skip RUN_DIR REASON`` records a job
the runner skipped because one before it did not complete (``cancelled``, never started; `status` says
"skipped: train failed"). SIGTERM (the runner's cancel) cancels the job.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Optional

from hpc_finetune import layout
from hpc_finetune.records import Registry, RunRecord, Segment, now
from hpc_finetune.states import CANCELLED, COMPLETED, LIVE, PENDING

POLL_SECONDS = 1.0


def start_runner(campaign_dir: Path, records: list[RunRecord], *, max_parallel: int = 0) -> int:
    """Start the detached runner for these runs (each waits on the runs of its ``after`` among them)."""
    from hpc_finetune.campaigns.stages import STAGES
    from hpc_finetune.job.runner import Plan, Task, start
    from hpc_finetune.render import job_python
    from hpc_finetune.profile import load_profile_file

    names = {r.run_id for r in records}
    python = job_python(load_profile_file(Path(records[0].run_dir) / layout.PROFILE_YAML))
    me = [python, "-m", "hpc_finetune.campaigns.localchain"]
    tasks = [Task(name=r.run_id, argv=[*me, "run", r.run_dir], after=[a for a in r.after if a in names],
                  needs="any" if STAGES[r.kind].after_any else "ok", label=r.kind,
                  skip_argv=[*me, "skip", r.run_dir], log=str(Path(r.run_dir) / "runner.log"))
             for r in records]
    folder = Path(campaign_dir) / "runner"
    n = 1
    while folder.exists():  # a re-wired chain gets a runner (and state file) of its own
        n += 1
        folder = Path(campaign_dir) / f"runner-{n}"
    return start(Plan(tasks, max_parallel=max_parallel), folder, python=python)


def run_job(run_dir: Path) -> int:
    from hpc_finetune.campaigns.chain import load_program
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.scheduler.local import LocalScheduler
    from hpc_finetune.tracking import refresh

    registry = Registry()
    rec = RunRecord.load(run_dir)
    scheduler = LocalScheduler()
    if not rec.segments and rec.state == CANCELLED:  # `cancel` while it was held: not started, the rest skipped
        print(f"{rec.run_id}: cancelled before it started", flush=True)
        return 1
    if not (rec.segments and rec.segments[-1].state in LIVE):  # else: a job already queued (a requeued run's)
        profile = load_profile_file(run_dir / layout.PROFILE_YAML)
        job_id = scheduler.submit(run_dir, (run_dir / layout.JOB_SCRIPT).read_text(), load_program(run_dir),
                                  time_seconds=rec.time_seconds, max_requeues=profile.max_requeues)
        rec.segments.append(Segment(job_id=job_id, started_by="runner", submitted=now()))
        rec.state, rec.reason = PENDING, ""
        rec.save()
        registry.upsert(rec)
        print(f"{rec.run_id}: job {job_id}", flush=True)

    def cancel(signum, frame):  # noqa: ARG001
        scheduler.cancel(rec.job_id, run_dir)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, cancel)
    while True:
        refresh(registry, [rec])
        if rec.state not in LIVE:
            break
        time.sleep(POLL_SECONDS)
    print(f"{rec.run_id}: {rec.state}", flush=True)
    return 0 if rec.state == COMPLETED else 1


def skip_job(run_dir: Path, reason: str) -> int:
    registry = Registry()
    rec = RunRecord.load(run_dir)
    rec.state, rec.reason = CANCELLED, ""  # status words it from the job before: "skipped: train failed"
    rec.save()
    registry.upsert(rec)
    print(f"{rec.run_id}: skipped ({reason})", flush=True)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "run":
        return run_job(Path(args[1]))
    if len(args) >= 2 and args[0] == "skip":
        return skip_job(Path(args[1]), args[2] if len(args) > 2 else "")
    print("usage: python -m hpc_finetune.campaigns.localchain run RUN_DIR | skip RUN_DIR REASON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
