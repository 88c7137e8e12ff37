"""How a job segment ended, and whether the run goes on: the requeue and retry policy, in one place.

Words: a *segment* is one job instance of a run (``records.Segment``, record.json's "segments"); its *events* are
what the job logged about it (start, requeued, stopped, retrying, gave up, ...). The job itself (node 0's program,
or the batch script after `srun` returned non-zero) appends them to RUN_DIR/attempts.jsonl (``EVENTS_FILE``; the
name older runs have), one JSON line per event; `status` reads them. Login-light: no training library here.

Policy:
- time limit or preemption signal (the profile's warning signal, or the SIGTERM of a preemption with a GraceTime):
  the trainers save within the time left, the job requeues itself, once per signal, at most ``max_requeues`` times
  in all; after that the run stops with the reason in `status` (and `hpc-finetune requeue RUN` goes on by hand);
- a SIGTERM that is no preemption (scancel, the time limit's kill, a shutdown): the trainers save if they can, the
  event says why, and nothing requeues;
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

from hpc_finetune.jsonlog import read_objects
from hpc_finetune.states import Event

EVENTS_FILE = "attempts.jsonl"  # kept: run directories of every release have it
MAX_EVENTS_BYTES = 8 * 1024 * 1024


def log_event(run_dir: Path | str, event: Event | str, **fields: object) -> dict:
    line = {"event": str(event), "job_id": os.environ.get("SLURM_JOB_ID", os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")),
            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            "host": os.uname().nodename, "time": time.time(), **fields}
    with open(Path(run_dir) / EVENTS_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def read_events(run_dir: Path | str) -> list[dict]:
    return read_objects(Path(run_dir) / EVENTS_FILE, tail_bytes=MAX_EVENTS_BYTES)  # bounded: the newest are plenty


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


def slurm_job(job_id: str, timeout: float = 10) -> dict[str, str]:
    """Slurm's record of a job (`scontrol show job -o`): JobState, PreemptTime, EndTime, Restarts, ...; {} where
    Slurm does not answer (no Slurm here, the controller is down, the node is shutting down)."""
    if not job_id:
        return {}
    try:
        proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return {}
    fields: dict[str, str] = {}
    if proc.returncode == 0:
        for token in proc.stdout.split():
            key, sep, value = token.partition("=")
            if sep and key not in fields:
                fields[key] = value
    return fields


def slurm_time(value: Optional[str]) -> Optional[float]:
    """A Slurm timestamp (2026-11-26T14:04:58, the controller's local time) as epoch seconds; None for None/Unknown."""
    try:
        return time.mktime(time.strptime(value or "", "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def term_cause(job: dict[str, str]) -> str:
    """Why a SIGTERM came, from Slurm's record of the job at that moment:

    - ``preempted``: a PreemptTime is set: a higher-priority job takes the nodes after the partition's GraceTime
      (PreemptMode=REQUEUE or CANCEL; Slurm sends SIGCONT+SIGTERM, then SIGKILL at EndTime);
    - ``ended``: the job is already ending (scancel, the time limit's kill, a requeue by hand): it must not requeue
      itself;
    - ``not Slurm``: the job still runs and nothing preempts it: a node's shutdown or a kill by hand;
    - ``unknown``: Slurm did not answer.
    """
    if not job:
        return "unknown"
    if slurm_time(job.get("PreemptTime")) is not None:
        return "preempted"
    return "not Slurm" if job.get("JobState") == "RUNNING" else "ended"


def requeue_margin(signal_seconds: int) -> float:
    """Seconds kept back from the time left for requeuing the job (scontrol, submitit's pickle, clock granularity)."""
    return min(10.0, max(1.0, signal_seconds / 4))


def save_deadline(signal_at: float, signal_seconds: int, job_end: Optional[float]) -> float:
    """Until when the node program waits for the trainers' save before it requeues anyway, less the requeue margin:
    Slurm's EndTime for the job where Slurm said it (the time limit, or the end of a preemption's GraceTime: the
    moment Slurm kills the job, however early its warning came), else the ``signal_seconds`` the warning promised
    from its arrival. A save still running then is lost, not the job: it resumes from the last complete checkpoint."""
    end = job_end if job_end is not None else signal_at + signal_seconds
    return end - requeue_margin(signal_seconds)


def requeue_allowed(events: list[dict], job_id: str, max_requeues: int) -> Optional[str]:
    """None if the job may requeue itself once more, else why not. Counts this job's own requeues on a signal
    (a manual `requeue` starts a new job, and a new count)."""
    restarts = sum(1 for e in events if e.get("event") == Event.REQUEUED and e.get("job_id") == job_id)
    if restarts >= max_requeues:
        return (f"stopped after {restarts} automatic requeue(s): the profile's max_requeues is {max_requeues}; "
                "`hpc-finetune requeue RUN` continues from the saved checkpoint")
    return None


def retry_decision(events: list[dict], status: int, step: int, retry_on_failure: int) -> tuple[bool, str]:
    """After a failed segment: (retry?, why). ``events`` are the run's events so far, without this failure."""
    if retry_on_failure <= 0:
        return False, f"failed with exit status {status} at step {step}; the profile does not retry failures " \
                      "(retry_on_failure: 0); `hpc-finetune requeue RUN` resumes from the last checkpoint"
    retries = sum(1 for e in events if e.get("event") == Event.RETRYING)
    last_failure = next((e for e in reversed(events) if e.get("event") in (Event.RETRYING, Event.GAVE_UP)), None)
    if last_failure is not None and last_failure.get("status") == status and last_failure.get("step") == step:
        return False, f"failed twice in a row the same way (exit status {status}, no progress past step {step}): " \
                      "not retried again; read `hpc-finetune logs RUN`"
    if retries >= retry_on_failure:
        return False, f"failed with exit status {status} at step {step} after {retries} automatic retr" \
                      f"{'y' if retries == 1 else 'ies'} (the profile's retry_on_failure)"
    return True, f"failed with exit status {status} at step {step}; automatic retry {retries + 1} of " \
                 f"{retry_on_failure}"


def segment_events(events: list[dict], job_id: str, restart: int) -> list[dict]:
    """The events of one job segment (a job id and Slurm's restart count)."""
    return [e for e in events if e.get("job_id") == job_id and int(e.get("restart", 0) or 0) == restart]


def after_failure(run_dir: str, output_dir: str, status: int, retry_on_failure: int, max_requeues: int = 5) -> bool:
    """Called by the batch script when `srun` failed: log the failure and requeue the job if the policy allows.

    Not a failure: a segment that already ended on purpose (its node program requeued it on a signal, stopped at
    the requeue limit, or recorded a SIGTERM that must not requeue), and a preempted job. Slurm requeues a preempted
    job only if it still runs when the GraceTime ends; one whose steps ended earlier would just complete, so it is
    requeued here, once, unless the node program already did."""
    step = current_step(output_dir)
    events = read_events(run_dir)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    mine = segment_events(events, job_id, int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0))
    if any(e.get("event") in (Event.REQUEUED, Event.STOPPED, Event.TERMINATED) for e in mine):
        return False
    if term_cause(slurm_job(job_id)) == "preempted":
        stop = requeue_allowed(events, job_id, max_requeues)
        if stop:
            log_event(run_dir, Event.STOPPED, reason=f"preempted; {stop}", step=step)
            return False
        log_event(run_dir, Event.REQUEUED, reason="preempted (SIGTERM)", step=step, status=status)
        subprocess.run(["scontrol", "requeue", job_id], check=False, timeout=60)
        return True
    retry, why = retry_decision(events, status, step, retry_on_failure)
    log_event(run_dir, Event.RETRYING if retry else Event.GAVE_UP, status=status, step=step, reason=why)
    print(f"hpc-finetune: {why}", flush=True)
    if retry:
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)
    return retry


def main(argv: Optional[list[str]] = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    run_dir, output_dir, status, retries = args[:4]
    after_failure(run_dir, output_dir, int(status), int(retries), *(int(a) for a in args[4:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
