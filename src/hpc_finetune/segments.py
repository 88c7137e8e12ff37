"""How a job segment ended, and whether the run goes on: the requeue and retry policy, in one place.

Written by the job itself (node 0's program, or the batch script after `srun` returned non-zero) into
RUN_DIR/attempts.jsonl, one JSON line per event; read by `status`. Login-light: no training library here.

Policy:
- time limit or preemption signal: the trainers save, the job requeues itself, at most ``max_requeues`` times
  in all; after that the run stops with the reason in `status` (and `hpc-finetune requeue RUN` goes on by hand);
- failure (a crashed or killed trainer, a failed node): requeued automatically only if the profile's
  ``retry_on_failure`` allows it, and never after two failures in a row with the same exit status and no optimizer
  step gained in between: that is a bug, not bad luck, and retrying it would loop forever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ATTEMPTS = "attempts.jsonl"


def log_event(run_dir: Path | str, event: str, **fields: object) -> dict:
    line = {"event": event, "job_id": os.environ.get("SLURM_JOB_ID", os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")),
            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            "host": os.uname().nodename, "time": time.time(), **fields}
    with open(Path(run_dir) / ATTEMPTS, "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def read_events(run_dir: Path | str) -> list[dict]:
    try:
        text = (Path(run_dir) / ATTEMPTS).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a killed job
    return out


def current_step(output_dir: Path | str) -> int:
    """The last optimizer step the main process finished: the last whole line of OUTPUT/steps.log (written at every
    step; only its tail is read), else the progress snapshot, else 0."""
    try:
        with (Path(output_dir) / "steps.log").open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 64))
            tail = f.read()
        whole = tail[:tail.rfind(b"\n")].split() if b"\n" in tail else []  # not a line a kill left half-written
        if whole:
            return int(whole[-1])
    except (OSError, ValueError):
        pass
    try:
        return int(json.loads((Path(output_dir) / "progress.json").read_text()).get("step", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def signal_reason(elapsed: float, time_seconds: int, signal_seconds: int) -> str:
    """Slurm sends the warning signal up to a minute before `signal_seconds` is reached; anything earlier is not
    the time limit (a preemption, or `scancel --signal`)."""
    remaining = time_seconds - elapsed
    return "time limit" if remaining <= signal_seconds + 90 else "preempted"


def requeue_allowed(events: list[dict], job_id: str, max_requeues: int) -> Optional[str]:
    """None if the job may requeue itself once more, else why not. Counts this job's own requeues on a signal
    (a manual `requeue` starts a new job, and a new count)."""
    restarts = sum(1 for e in events if e.get("event") == "requeued" and e.get("job_id") == job_id)
    if restarts >= max_requeues:
        return (f"stopped after {restarts} automatic requeue(s): the profile's max_requeues is {max_requeues}; "
                "`hpc-finetune requeue RUN` continues from the saved checkpoint")
    return None


def retry_decision(events: list[dict], status: int, step: int, retry_on_failure: int) -> tuple[bool, str]:
    """After a failed segment: (retry?, why). ``events`` are the attempts so far, without this failure."""
    if retry_on_failure <= 0:
        return False, f"failed with exit status {status} at step {step}; the profile does not retry failures " \
                      "(retry_on_failure: 0); `hpc-finetune requeue RUN` resumes from the last checkpoint"
    retries = sum(1 for e in events if e.get("event") == "retrying")
    last_failure = next((e for e in reversed(events) if e.get("event") in ("retrying", "gave up")), None)
    if last_failure is not None and last_failure.get("status") == status and last_failure.get("step") == step:
        return False, f"failed twice in a row the same way (exit status {status}, no progress past step {step}): " \
                      "not retried again; read `hpc-finetune logs RUN`"
    if retries >= retry_on_failure:
        return False, f"failed with exit status {status} at step {step} after {retries} automatic retr" \
                      f"{'y' if retries == 1 else 'ies'} (the profile's retry_on_failure)"
    return True, f"failed with exit status {status} at step {step}; automatic retry {retries + 1} of " \
                 f"{retry_on_failure}"


def after_failure(run_dir: str, output_dir: str, status: int, retry_on_failure: int) -> bool:
    """Called by the batch script when `srun` failed: log the failure and requeue the job if the policy allows."""
    step = current_step(output_dir)
    events = read_events(run_dir)
    if events and events[-1].get("event") == "stopped":
        return False  # the requeue limit ended this job on purpose, with its own reason; not a failure to retry
    retry, why = retry_decision(events, status, step, retry_on_failure)
    log_event(run_dir, "retrying" if retry else "gave up", status=status, step=step, reason=why)
    print(f"hpc-finetune: {why}", flush=True)
    if retry:
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True, timeout=60)
    return retry


def main(argv: Optional[list[str]] = None) -> int:
    run_dir, output_dir, status, retries = (argv if argv is not None else sys.argv[1:])[:4]
    after_failure(run_dir, output_dir, int(status), int(retries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
