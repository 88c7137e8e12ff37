"""The checkpoint signal reaches every trainer at any moment, and the run resumes with every optimizer step once.

- Locally (submitit's local controller, no Slurm): a 2-process accelerate run (gloo) is signalled only at its node
  program, once while both trainers are held in start-up (tests/startup_gate.py) and once mid-training. torch
  elastic starts each worker in a session of its own, so only the node program's forwarding can reach them.
- On the dev cluster: real preemption. A job on the preemptable `lowprio` partition is preempted by one on
  `highprio` (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE, GraceTime=30): Slurm sends SIGCONT+SIGTERM
  to every process of the job's steps, and would SIGKILL them 30 s later.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cli, log_text, profile_with, status_of, submit, wait_for, wait_state

HERE = Path(__file__).resolve().parent
GATE = f"{HERE / 'startup_gate.py'}:StartupGate"
PACED = f"{HERE / 'paced_steps.py'}:PacedSteps"


def sets(*pairs: str) -> list[str]:
    return [a for kv in pairs for a in ("--set", kv)]


def events(row: dict) -> list[dict]:
    path = Path(row["run_dir"]) / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kinds(row: dict) -> list[str]:
    return [e["event"] for e in events(row)]


def steps_logged(row: dict) -> list[int]:
    path = Path(row["run_dir"]) / "output" / "steps.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def node_program(controller: int, not_pid: int = 0) -> int:
    """The live node program (submitit's task) under the local controller, other than ``not_pid``."""
    def find():
        for pid in children(controller):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"submitit.core._submit" in cmdline and pid != not_pid:
                return pid
        return None
    return wait_for("the node program", find, timeout=120)


@pytest.mark.train
def test_local_two_processes_signalled_in_startup_then_mid_training(home, demo_dir, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("HPCFT_TEST_GATE", str(gate))
    steps = 60
    out = cli("submit", str(demo_dir / "run.yaml"), *sets(
        "launch.processes_per_node=2", f"training.max_steps={steps}", "training.save_steps=1000000",
        "training.logging_steps=5", "logging.wandb=disabled", f"training.callbacks=[{json.dumps(GATE)}, "
        f"{json.dumps(PACED)}]"), check=True).stdout
    run = re.search(r"submitted run (\S+) as job (\d+)", out).group(1)
    row = status_of(run)
    controller = int(row["job_id"])
    output = Path(row["run_dir"]) / "output"

    # 1. both trainers are in start-up (handler installed, model not loaded): signal the node program alone
    wait_for("both trainers in start-up", lambda: len(list(gate.glob("started-*"))) == 2, timeout=300)
    first = node_program(controller)
    os.kill(first, signal.SIGUSR2)
    wait_for("the node program to take the signal", lambda: "Caught signal SIGUSR2" in log_text(run), timeout=60)
    (gate / "go").touch()
    wait_for("the requeue after start-up", lambda: "requeued" in kinds(row), timeout=300)
    log = log_text(run)
    for rank in (0, 1):  # both workers, each in its own session, learnt of it: no rank waited in a collective
        assert f"rank {rank}: SIGUSR2 during start-up, before step 1: no checkpoint needed" in log, log[-3000:]
    assert not list(output.glob("checkpoint-*")) and steps_logged(row) == []

    # 2. mid-training, in the requeued segment: save at the step boundary, requeue, resume there
    wait_for("steps after the requeue", lambda: len(steps_logged(row)) >= 10, timeout=300)
    os.kill(node_program(controller, not_pid=first), signal.SIGUSR2)
    row = wait_state(run, {"completed", "failed", "cancelled"}, timeout=600)
    log = log_text(run)
    assert row["state"] == "completed", log[-4000:]
    evs = events(row)
    assert [e["event"] for e in evs] == ["start", "requeued", "start", "requeued", "start", "completed"], evs
    assert evs[1]["step"] == 0
    saved = evs[3]["step"]
    assert 10 <= saved < steps and (output / f"checkpoint-{saved}" / "trainer_state.json").is_file()
    for rank in (0, 1):
        assert f"rank {rank}: SIGUSR2, stopping after step {saved}" in log
    assert f"resume_from={output / f'checkpoint-{saved}'}" in log
    assert steps_logged(row) == list(range(1, steps + 1))  # nothing lost, nothing done twice
    assert json.loads((output / "summary.json").read_text())["step"] == steps


def squeue_field(job: str, fmt: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", fmt], capture_output=True, text=True).stdout.strip()


@pytest.mark.slurm
def test_real_preemption_saves_in_the_grace_time_and_requeues_once(home, devcluster, demo_dir, tmp_path, monkeypatch):
    """A 2-process run (accelerate, torch elastic's agent) on `lowprio` is preempted by a `highprio` job on its node:
    the trainers save on Slurm's SIGTERM within the 30 s grace, the job requeues once, resumes there and completes
    with every optimizer step logged once. Beside it, a run on `debug` is scancelled: the same SIGTERM, told apart
    as no preemption, recorded, and not requeued."""
    steps = 120  # 30 s of paced work
    common = ("launch.processes_per_node=2", "training.save_steps=1000000", "training.logging_steps=10",
              "logging.wandb=disabled", f"training.callbacks=[{json.dumps(PACED)}]")
    node1 = profile_with(tmp_path, monkeypatch, "node1", "extra_sbatch: ['--nodelist=node1']\n")
    node2 = profile_with(tmp_path, monkeypatch, "node2", "extra_sbatch: ['--nodelist=node2']\n")
    run = submit("--nodes", "1", "--gpus", "0", "--partition", "lowprio",
                 *sets(*common, f"training.max_steps={steps}"), str(demo_dir / "run.yaml"), cluster=node1)
    cancelled = submit("--nodes", "1", "--gpus", "0", *sets(*common, "training.max_steps=100000"),
                       str(demo_dir / "run.yaml"), cluster=node2)
    row, other = status_of(run), status_of(cancelled)
    job = row["job_id"]
    wait_for("steps before the preemption", lambda: len(steps_logged(row)) >= 20, timeout=300)
    wait_for("steps before scancel", lambda: len(steps_logged(other)) >= 5, timeout=300)

    # preemption: a highprio job wants every CPU of node1; scancel: the other run
    high = subprocess.run(["sbatch", "--parsable", "-p", "highprio", "-w", "node1", "-c", "4", "--mem=500M", "-t", "2",
                           "-o", str(tmp_path / "high.out"), "--wrap", "sleep 10"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["scancel", other["job_id"]], check=True)
    wait_for("the preemption's requeue", lambda: "requeued" in kinds(row), timeout=120)
    row = wait_state(run, {"completed", "failed", "cancelled", "stopped"}, timeout=600)
    log = log_text(run)
    assert row["state"] == "completed", log[-4000:]
    evs = events(row)
    assert [e["event"] for e in evs] == ["start", "requeued", "start", "completed"], evs  # no retry, no 2nd requeue
    assert evs[1]["reason"] == "preempted (SIGTERM)" and evs[2]["restart"] == 1
    saved = evs[1]["step"]
    assert saved >= 20 and (Path(row["run_dir"]) / "output" / f"checkpoint-{saved}" / "trainer_state.json").is_file()
    for rank in (0, 1):  # both workers saved on SIGTERM; torch elastic's agent did not kill them
        assert f"rank {rank}: SIGTERM, stopping after step {saved}" in log
    assert "death signal" not in log and "trainer exited" not in kinds(row)
    assert f"resume_from={Path(row['run_dir']) / 'output' / f'checkpoint-{saved}'}" in log
    assert steps_logged(row) == list(range(1, steps + 1))  # the save fit the grace: not one step lost or redone
    assert row["requeues"] == 1
    restarts = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1 " in restarts  # Slurm's own count: one requeue, not two
    assert subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", high], capture_output=True,
                          text=True).stdout.split()[0] in ("COMPLETED", "RUNNING")  # it did get node1
    text = cli("status", run, "--segments", check=True).stdout
    assert "requeued at step" in text and "- preempted (SIGTERM)" in text and "requeue(s)" in text

    # scancel: SIGTERM as well, but no preemption: recorded, saved if there was time, never requeued
    other = wait_state(cancelled, {"cancelled", "failed", "completed"}, timeout=120)
    assert other["state"] == "cancelled"
    evs = events(other)
    terminated = [e for e in evs if e["event"] == "terminated"]
    assert len(terminated) == 1 and "not requeued" in terminated[0]["reason"], evs
    assert not {"requeued", "retrying"} & {e["event"] for e in evs}
    assert other["requeues"] == 0
