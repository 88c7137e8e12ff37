"""This machine, no scheduler: submitit's local controller, started by our rendered bash script.

The job id is the controller's process id. State comes from the process and submitit's result file. The process
counts as alive while a process with that pid exists, is not a zombie and has the start time recorded at submit
(``/proc/PID/stat`` field 22, fixed at fork and unchanged by exec): a reused pid does not pass, and a job that is
mid-exec (empty ``/proc/PID/cmdline``) is not mistaken for a dead one. A job judged ended without a result file is
looked at again by the next `status` (``records.NO_RESULT``), which corrects the verdict if the job turns out alive
or successful.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from hpc_finetune import states
from hpc_finetune.records import NO_RESULT
from hpc_finetune.scheduler.base import JobInfo, Scheduler


def _start(jobs: Path, script: Path) -> subprocess.Popen:
    """Run the rendered script (which ends in submitit's local controller) in its own session."""
    log = open(jobs / "controller.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(["bash", str(script)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    stat = _proc_stat(process.pid)  # Popen returns after the exec: the pid is ours and still running
    if stat is not None:
        _start_file(jobs, process.pid).write_text(stat[1] + "\n")
    return process


def _executor_class() -> type:
    from hpc_finetune.submitit_api import script_local_executor

    return script_local_executor(_start)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime), counted from the pid as field 1


def _start_file(jobs: Path, pid: int) -> Path:
    return jobs / f"{pid}.starttime"


def _alive(pid: int, started: str | None) -> bool:
    """The job's process exists, is not a zombie and (when recorded) started when ours did."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if started is not None:
        return stat[1] == started
    # a job submitted before start times were recorded: the pid must still run our controller (a reused pid
    # would otherwise count as alive forever)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"submitit" in cmdline or b"bash" in cmdline


def _recorded_start(jobs: Path, pid: int) -> str | None:
    try:
        return _start_file(jobs, pid).read_text().strip() or None
    except OSError:
        return None


class LocalScheduler(Scheduler):
    name = "local"

    def submit(self, run_dir: Path, script: str, program: Any, *, time_seconds: int, max_requeues: int) -> str:
        jobs = run_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        executor = _executor_class()(folder=jobs, max_num_timeout=max_requeues)
        executor.script_path = run_dir / "job.sh"
        executor.update_parameters(timeout_min=max(1, time_seconds // 60))
        job = executor.submit(program)
        self.calls += 1
        return str(job.job_id)

    def query(self, job_ids: list[str], run_dirs: dict[str, Path]) -> dict[str, JobInfo]:
        self.calls += 1  # reading /proc and result files: no external command
        out = {}
        for jid in job_ids:
            jobs = run_dirs[jid] / "jobs"
            started = _mtime(jobs / f"{jid}_submitted.pkl")
            if _alive(int(jid), _recorded_start(jobs, int(jid))):
                out[jid] = JobInfo(jid, states.RUNNING, "RUNNING",
                                   elapsed=int(time.time() - started) if started else None)
                continue
            if (jobs / f"{jid}.cancelled").exists():
                out[jid] = JobInfo(jid, states.CANCELLED, "CANCELLED")
                continue
            result = jobs / f"{jid}_0_result.pkl"
            try:
                with result.open("rb") as f:
                    outcome = pickle.load(f)[0]
            except (OSError, EOFError, pickle.UnpicklingError, IndexError, AttributeError, ModuleNotFoundError):
                outcome = None
            ended = _mtime(result)
            elapsed = int(ended - started) if started and ended else None
            if outcome == "success":
                out[jid] = JobInfo(jid, states.COMPLETED, "COMPLETED", elapsed=elapsed)
            elif outcome is None:  # gone without a result: failed, unless a later look finds otherwise
                out[jid] = JobInfo(jid, states.FAILED, NO_RESULT, elapsed=elapsed)
            else:
                out[jid] = JobInfo(jid, states.FAILED, "FAILED", elapsed=elapsed)
        return out

    def cancel(self, job_id: str, run_dir: Path) -> None:
        (run_dir / "jobs" / f"{job_id}.cancelled").touch()
        if _alive(int(job_id), _recorded_start(run_dir / "jobs", int(job_id))):
            try:
                os.killpg(int(job_id), signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.calls += 1

    def requeue_running(self, job_id: str) -> None:
        from hpc_finetune.errors import UserError

        raise UserError("a running local job cannot be requeued in place; cancel it, then `requeue` it",
                        source="requeue")
