"""Slurm through submitit: submitit keeps the job folder, pickles and state; the sbatch text is our template."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Optional

from hpc_finetune import states
from hpc_finetune.errors import UserError
from hpc_finetune.scheduler.base import JobInfo, Scheduler

# JobID, not JobIDRaw: an array task's raw id is not its ``ARRAY_TASK`` id, and pending tasks share one row
# (campaigns/arrays.py); for a plain job the two are the same
SACCT_FIELDS = "JobID,State,ElapsedRaw,NodeList,ExitCode,AllocTRES"
GPU_TRES = re.compile(r"(?:^|,)gres/gpu(?::[^=,]+)?=(\d+)")


def tres_gpus(alloc_tres: str) -> Optional[int]:
    """GPUs in an AllocTRES string (``billing=8,cpu=8,gres/gpu=4,mem=...``); None if it names none. A typed entry
    (``gres/gpu:a100=4``) repeats the untyped total, so the untyped one is preferred."""
    found = [(m.group(0), int(m.group(1))) for m in GPU_TRES.finditer(alloc_tres)]
    untyped = [n for text, n in found if ":" not in text]
    return untyped[0] if untyped else (found[0][1] if found else None)


def _executor_class() -> type:
    from hpc_finetune.submitit_api import script_slurm_executor

    return script_slurm_executor()


def run(cmd: list[str], what: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError(f"`{cmd[0]}` not found: is this a Slurm login node (or is SLURM_CONF set)?",
                        source=what) from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"`{' '.join(cmd[:2])}` failed: {msg[-1] if msg else proc.returncode}", source=what)
    return proc.stdout


class SlurmScheduler(Scheduler):
    name = "slurm"

    def submit(self, run_dir: Path, script: str, program: Any, *, time_seconds: int, max_requeues: int) -> str:
        executor = _executor_class()(folder=run_dir / "jobs", max_num_timeout=max_requeues)
        executor.script_text = script
        executor.update_parameters(time=max(1, time_seconds // 60))  # submitit's own timeout bookkeeping
        try:
            job = executor.submit(program)
        except Exception as exc:  # submitit wraps sbatch's error text
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else str(exc))
            raise UserError(f"sbatch refused the job: {detail.strip()}", source="submit") from None
        self.calls += 1
        return str(job.job_id)

    def submit_array(self, script_path: Path, members: list[tuple[Path, Any]], *, time_seconds: int,
                     max_requeues: int, indices: Optional[str] = None) -> str:
        """Each member's program is pickled into its run directory BEFORE sbatch (RUN_DIR/jobs/member_submitted.pkl,
        as submitit's DelayedSubmission with its timeout bookkeeping), so no task can start without it: submitit's
        own map_array moves the pickles to ``ARRAY_TASK_submitted.pkl`` only after sbatch returned, and a task
        that starts first waits 60 s for them (core/submission.py process_job) and then fails. The array script
        copies the member's pickle to that name at run time (campaigns/arrayscript.py)."""
        from hpc_finetune.campaigns.arrayscript import MEMBER_PICKLE
        from hpc_finetune.submitit_api import write_program

        for run_dir, program in members:
            jobs = run_dir / "jobs"
            jobs.mkdir(parents=True, exist_ok=True)
            tmp = jobs / f".{MEMBER_PICKLE}.tmp"
            write_program(program, tmp, timeout_min=max(1, time_seconds // 60), max_requeues=max_requeues)
            tmp.replace(jobs / MEMBER_PICKLE)
        # indices: some members again (a campaign's `requeue`), e.g. "1,3%2"; sbatch's --array beats the script's
        out = run(["sbatch", "--parsable", *([f"--array={indices}"] if indices else []), str(script_path)], "sweep")
        self.calls += 1
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise UserError(f"sbatch answered {out.strip()[:80]!r}, not a job id", source="sweep")
        return job_id

    def query(self, job_ids: list[str], run_dirs: dict[str, Path]) -> dict[str, JobInfo]:
        from hpc_finetune.campaigns.arrays import group_rows, query_ids, stale_range_tasks

        if not job_ids:
            return {}
        # --duplicates: a job requeued in place keeps its id, and without it sacct shows only its last instance; every
        # instance is listed oldest first, so the last row is the current state and GPU time sums over all of them.
        # An array is asked for once by its own id: a pending task has no row of its own (`-j 6_2` shows nothing)
        out = run(["sacct", "-X", "--duplicates", "-P", "-n", "-o", SACCT_FIELDS, "-j", ",".join(query_ids(job_ids))],
                  "status")
        self.calls += 1
        wanted = set(job_ids)
        infos: dict[str, JobInfo] = {}
        rows = [line.split("|") for line in out.splitlines()]
        groups = group_rows((r for r in rows if len(r) >= 5), 0)
        stale = stale_range_tasks(groups, lambda raw: states.from_slurm(raw) in states.LIVE)
        for jid, instances in groups.items():
            if jid not in wanted or jid in stale:
                continue
            gpu_seconds, elapsed_all = None, 0
            for parts in instances:
                _, raw, elapsed, nodelist, exit_code = parts[:5]
                tres = parts[5] if len(parts) > 5 else ""
                seconds = int(elapsed) if elapsed.isdigit() else None
                gpus = tres_gpus(tres)
                if seconds is not None and gpus is not None:
                    gpu_seconds = (gpu_seconds or 0.0) + seconds * gpus
                elapsed_all += seconds or 0
            infos[jid] = JobInfo(job_id=jid, state=states.from_slurm(raw), raw_state=raw, elapsed=seconds,
                                 nodelist="" if nodelist.startswith("None") else nodelist, exit_code=exit_code,
                                 gpu_seconds=gpu_seconds, elapsed_all=elapsed_all)
        return infos

    def cancel(self, job_id: str, run_dir: Path) -> None:
        run(["scancel", job_id], "cancel")
        self.calls += 1

    def requeue_running(self, job_id: str) -> None:
        run(["scontrol", "requeue", job_id], "requeue")
        self.calls += 1
