"""The local runner (job/runner.py): chain order, skipping after a failure, bounded parallelism, cancel.

Real processes (small shell commands), no mocks; no timed assertions: tasks block on release files the test writes,
so what may run at once is decided by the runner alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hpc_finetune.job.runner import Plan, Task, cancel, read_state, run_plan, start


def sh(script: str) -> list[str]:
    return ["bash", "-c", script]


def wait_for(pred, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_chain_runs_in_order_each_after_the_previous_ended(tmp_path):
    ev = tmp_path / "ev"
    tasks = [Task(n, sh(f"echo start-{n} >> {ev}; sleep 0.1; echo end-{n} >> {ev}"), after=[p] if p else [])
             for n, p in (("prepare", None), ("train", "prepare"), ("merge", "train"), ("eval", "merge"))]
    # listed out of order: the dependencies, not the list, decide
    final = run_plan(Plan([tasks[3], tasks[1], tasks[0], tasks[2]]), tmp_path / "runner")
    assert final == dict.fromkeys(("eval", "train", "prepare", "merge"), "completed")
    assert events(ev) == ["start-prepare", "end-prepare", "start-train", "end-train", "start-merge", "end-merge",
                          "start-eval", "end-eval"]
    state = read_state(tmp_path / "runner")
    assert state["merge"]["started"] >= state["train"]["ended"]


def test_failure_skips_the_tail_with_the_root_reason_and_afterany_still_runs(tmp_path):
    ev, skips = tmp_path / "ev", tmp_path / "skips"
    plan = Plan([
        Task("demo", sh(f"echo demo >> {ev}; exit 3"), label="train"),
        Task("demo-merge", sh(f"echo merge >> {ev}"), after=["demo"], label="merge",
             skip_argv=["bash", "-c", f'echo "$0|$1" >> {skips}', "demo-merge"]),
        Task("demo-eval", sh(f"echo eval >> {ev}"), after=["demo-merge"], label="eval"),
        Task("demo-select", sh(f"echo select >> {ev}"), after=["demo"], needs="any", label="select"),
    ])
    final = run_plan(plan, tmp_path / "runner")
    assert final == {"demo": "failed", "demo-merge": "skipped", "demo-eval": "skipped", "demo-select": "completed"}
    assert events(ev) == ["demo", "select"]  # merge and eval never ran
    state = read_state(tmp_path / "runner")
    assert state["demo"]["returncode"] == 3
    assert state["demo-merge"]["reason"] == state["demo-eval"]["reason"] == "train failed"
    assert skips.read_text() == "demo-merge|train failed\n"  # the skip hook got the reason


def test_at_most_max_parallel_tasks_run_at_once(tmp_path):
    ev = tmp_path / "ev"
    names = [f"m{i}" for i in range(4)]
    plan = Plan([Task(n, sh(f"echo start-{n} >> {ev}; while [ ! -e {tmp_path}/release-{n} ]; do sleep 0.05; done; "
                            f"echo end-{n} >> {ev}")) for n in names], max_parallel=2)
    folder = tmp_path / "runner"
    start(plan, folder)
    try:
        check_bounded(tmp_path, folder, ev, names)
    finally:
        cancel(folder)  # a failed assertion must not leave the runner waiting on release files forever


def running_at_once(log: list[str]) -> int:
    """The most tasks running at one moment, read from the append-only start/end log (each task appends its start
    before it blocks and its end before it exits, so the log's order is the order things happened)."""
    now = most = 0
    for e in log:
        now += 1 if e.startswith("start-") else -1
        most = max(most, now)
    return most


def check_bounded(tmp_path: Path, folder: Path, ev: Path, names: list[str]) -> None:
    wait_for(lambda: len(events(ev)) == 2, what="two members started")
    # the runner records a start just after the process began: wait for its state file to say so too
    wait_for(lambda: [n for n in names if read_state(folder).get(n, {}).get("state") == "running"] == ["m0", "m1"],
             what="the runner's state to show m0 and m1 running")
    (tmp_path / "release-m1").touch()  # one slot frees: the next in plan order starts
    wait_for(lambda: "start-m2" in events(ev), what="a third member")
    for n in names:
        (tmp_path / f"release-{n}").touch()
    wait_for(lambda: all(s["state"] == "completed" for s in read_state(folder).values()), what="all completed")
    log = events(ev)
    # no sleep-and-hope negative check: a runner that ever ran a third task while two held their slots shows it in
    # the log itself (m0 and m1 block until released, so an eager m2/m3 start lands before any end)
    assert running_at_once(log) == 2, log
    assert sorted(log[:2]) == ["start-m0", "start-m1"] and log.index("start-m2") > log.index("end-m1"), log
    assert log.index("start-m3") > min(log.index("end-m0"), log.index("end-m2")), log
    assert sorted(e for e in log if e.startswith("start-")) == sorted(f"start-{n}" for n in names)


def test_cancel_stops_the_running_task_and_cancels_the_rest(tmp_path):
    ev = tmp_path / "ev"
    plan = Plan([Task("train", sh(f"echo started >> {ev}; sleep 300; echo finished >> {ev}")),
                 Task("merge", sh(f"echo merge >> {ev}"), after=["train"])])
    folder = tmp_path / "runner"
    start(plan, folder)
    try:
        wait_for(lambda: events(ev) == ["started"], what="train started")
    except AssertionError:
        cancel(folder)
        raise
    assert cancel(folder)
    state = wait_for(lambda: (s := read_state(folder)) and all(v["state"] == "cancelled" for v in s.values()) and s,
                     what="everything cancelled")
    pid = state["train"]["pid"]
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
             what="train's process gone")
    assert events(ev) == ["started"]
    assert not cancel(folder)  # the runner has exited


@pytest.mark.parametrize("tasks,message", [
    ([Task("a", ["true"], after=["b"]), Task("b", ["true"], after=["a"])], "cycle"),
    ([Task("a", ["true"], after=["nope"])], "unknown task 'nope'"),
    ([Task("a", ["true"]), Task("a", ["true"])], "duplicate"),
    ([Task("a", ["true"], needs="afterok")], "needs must be"),
])
def test_a_plan_that_could_never_finish_is_refused_before_anything_runs(tmp_path, tasks, message):
    with pytest.raises(ValueError, match=message):
        start(Plan(tasks), tmp_path / "runner")
    assert not (tmp_path / "runner" / "runner.pid").exists()
