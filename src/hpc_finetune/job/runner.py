"""The local runner: the process that owns a chain of jobs (a small DAG) on a machine without a scheduler.

On Slurm, slurmctld holds dependencies (``--dependency=afterok:ID``). On the local profile nothing holds them once the
CLI exits, so the CLI starts this small detached process: it starts each task when the tasks it waits on have ended,
at most ``max_parallel`` at once, skips the tasks whose dependency failed (like ``--kill-on-invalid-dep=yes``), and
exits when every task has ended. It knows nothing of runs, records or schedulers: a task is a command that runs one
job and waits for it (exit status 0: the job completed). Standard library only.

API (stable; the sweeps' local sweeps use it: members are tasks with no ``after``, ``max_parallel`` = --max-parallel)::

    from hpc_finetune.job.runner import Plan, Task, cancel, read_state, run_plan, start

    Task(name, argv, after=(), needs="ok", label="", skip_argv=None, log=None)
        name       unique within the plan (e.g. a run id)
        argv       the command that runs the job and waits for it; exit status 0 means the job completed
        after      names of tasks that must end before this one starts
        needs      "ok": start only if every task in `after` completed, else skip (Slurm's afterok);
                   "any": start once they have all ended, however they ended (afterany)
        label      how reasons name this task (default: name), e.g. "train" -> "train failed"
        skip_argv  command run when the task is skipped, with the reason appended as its last argument (so the
                   task's run record can say why); optional, its exit status is ignored
        log        file for argv's stdout and stderr (default: FOLDER/NAME.log)
    Plan(tasks, max_parallel=0)       max_parallel: most tasks running at once (0: no bound)
    start(plan, folder) -> int        check the plan, write FOLDER/plan.json, start the runner detached (a session
                                      of its own: it outlives the CLI); returns its pid (also in FOLDER/runner.pid)
    run_plan(plan, folder) -> dict    the same, in this process, blocking; returns name -> final state
    read_state(folder) -> dict        name -> {"state", "pid", "returncode", "started", "ended", "reason"} from
                                      FOLDER/state.json (rewritten atomically at every change); state is one of
                                      pending, running, completed, failed, skipped, cancelled
    cancel(folder) -> bool            SIGTERM the runner (False if it is not running): it SIGTERMs the process
                                      groups of its running tasks, marks every task not yet ended "cancelled", exits

A task is skipped when needs="ok" and a task it waits on failed, was skipped or was cancelled; the reason names the
first failure of the chain ("train failed"), so the whole tail of a failed chain says the same. Tasks start in plan
order among those ready. A plan with an unknown name in ``after``, a duplicate name or a cycle is refused
(ValueError) before anything starts. ``python -m hpc_finetune.job.runner FOLDER`` runs FOLDER/plan.json (what
``start`` launches).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from hpc_finetune.states import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING

SKIPPED = "skipped"  # a task of the runner never started because one it waits on did not complete (not a job state)
ENDED = frozenset({COMPLETED, FAILED, SKIPPED, CANCELLED})
POLL_SECONDS = 0.2


@dataclass
class Task:
    name: str
    argv: list[str]
    after: Sequence[str] = ()
    needs: str = "ok"  # ok | any
    label: str = ""
    skip_argv: Optional[list[str]] = None
    log: Optional[str] = None


@dataclass
class Plan:
    tasks: list[Task]
    max_parallel: int = 0

    def check(self) -> None:
        """Refuse a plan that could never finish: duplicate or unknown names, a cycle, a bad ``needs``."""
        names = [t.name for t in self.tasks]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise ValueError(f"duplicate task name {n!r}")
            seen.add(n)
        for t in self.tasks:
            if t.needs not in ("ok", "any"):
                raise ValueError(f"task {t.name!r}: needs must be 'ok' or 'any', not {t.needs!r}")
            for dep in t.after:
                if dep not in seen:
                    raise ValueError(f"task {t.name!r} waits on unknown task {dep!r}")
        if self.max_parallel < 0:
            raise ValueError("max_parallel must be 0 (no bound) or more")
        done: set[str] = set()
        left = list(self.tasks)
        while left:  # Kahn: a task is placeable once everything it waits on is
            ready = [t for t in left if set(t.after) <= done]
            if not ready:
                raise ValueError("the tasks wait on each other in a cycle: " + ", ".join(t.name for t in left))
            done.update(t.name for t in ready)
            left = [t for t in left if t.name not in done]

    def to_json(self) -> str:
        return json.dumps({"max_parallel": self.max_parallel, "tasks": [asdict(t) for t in self.tasks]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        return cls([Task(**t) for t in data["tasks"]], int(data.get("max_parallel", 0)))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_state(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def skip_reason(label: str, state: str, reason: str) -> Optional[str]:
    """Why a needs="ok" task is skipped because of a dependency that ended as ``state`` (None: it completed)."""
    if state == COMPLETED:
        return None
    if state == SKIPPED and reason:
        return reason  # the root of the chain's failure, passed down unchanged
    return f"{label} {state}"


class _Runner:
    def __init__(self, plan: Plan, folder: Path) -> None:
        self.plan, self.folder = plan, Path(folder)
        self.state = {t.name: {"state": PENDING, "pid": None, "returncode": None, "started": None, "ended": None,
                               "reason": ""} for t in plan.tasks}
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def save(self) -> None:
        _write_json(self.folder / "state.json", self.state)

    def _end(self, task: Task, state: str, reason: str = "", returncode: Optional[int] = None) -> None:
        s = self.state[task.name]
        s.update(state=state, reason=reason, returncode=returncode, ended=time.time())
        if state == SKIPPED and task.skip_argv:
            try:
                subprocess.run([*task.skip_argv, reason], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=120)
            except (OSError, subprocess.SubprocessError):
                pass

    def _start(self, task: Task) -> None:
        log_path = Path(task.log) if task.log else self.folder / f"{task.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen(task.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as exc:
                self._end(task, FAILED, f"cannot start: {exc.strerror or exc}")
                return
        self.procs[task.name] = proc
        self.state[task.name].update(state=RUNNING, pid=proc.pid, started=time.time())

    def _labels(self) -> dict[str, str]:
        return {t.name: t.label or t.name for t in self.plan.tasks}

    def step(self) -> bool:
        """One pass: reap, skip, start. True while anything is left to do."""
        changed = False
        for name, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is not None:
                del self.procs[name]
                task = next(t for t in self.plan.tasks if t.name == name)
                self._end(task, COMPLETED if rc == 0 else FAILED, "" if rc == 0 else f"exit status {rc}", rc)
                changed = True
        labels = self._labels()
        for task in self.plan.tasks:
            s = self.state[task.name]
            if s["state"] != PENDING:
                continue
            deps = [self.state[d] for d in task.after]
            if any(d["state"] not in ENDED for d in deps):
                continue
            why = None
            if task.needs == "ok":
                why = next((r for d, dep in zip(deps, task.after)
                            if (r := skip_reason(labels[dep], d["state"], d["reason"]))), None)
            if why:
                self._end(task, SKIPPED, why)
                changed = True
                continue
            if self.plan.max_parallel and len(self.procs) >= self.plan.max_parallel:
                break  # plan order: a later ready task does not overtake an earlier one
            self._start(task)
            changed = True
        if changed:
            self.save()
        return any(s["state"] not in ENDED for s in self.state.values())

    def stop(self, signum: int, frame) -> None:  # noqa: ARG002
        self.stopping = True

    def cancel_all(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.procs.clear()
        for s in self.state.values():
            if s["state"] not in ENDED:
                s.update(state=CANCELLED, reason="cancelled", ended=time.time())
        self.save()

    def run(self) -> dict[str, str]:
        self.save()
        while self.step():
            if self.stopping:
                self.cancel_all()
                break
            time.sleep(POLL_SECONDS)
        return {name: s["state"] for name, s in self.state.items()}


def run_plan(plan: Plan, folder: Path) -> dict[str, str]:
    plan.check()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runner = _Runner(plan, folder)
    old = signal.signal(signal.SIGTERM, runner.stop)
    try:
        return runner.run()
    finally:
        signal.signal(signal.SIGTERM, old)


def start(plan: Plan, folder: Path, python: Optional[str] = None) -> int:
    plan.check()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "plan.json", json.loads(plan.to_json()))
    with open(folder / "runner.log", "ab") as log:
        proc = subprocess.Popen([python or sys.executable, "-m", "hpc_finetune.job.runner", str(folder)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (folder / "runner.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _runner_alive(folder: Path) -> Optional[int]:
    try:
        pid = int((Path(folder) / "runner.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            alive = b"hpc_finetune.job.runner" in f.read()
    except OSError:
        return None
    return pid if alive else None


def cancel(folder: Path) -> bool:
    pid = _runner_alive(folder)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hpc_finetune.job.runner FOLDER (runs FOLDER/plan.json)", file=sys.stderr)
        return 2
    folder = Path(args[0])
    plan = Plan.from_json((folder / "plan.json").read_text())
    final = run_plan(plan, folder)
    return 0 if all(s == COMPLETED for s in final.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
