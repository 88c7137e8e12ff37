"""Surviving the time limit, preemption and hard failures on the real dev cluster (Slurm 22.05, two nodes).

Slurm checks time limits every 30 s and sends the `--signal` warning up to a minute early, so a 2-minute limit with
`signal_seconds: 30` gives job segments of 50-90 s, 10-25 s of it start-up: 25-80 s of training. How many steps fit
in that must not depend on how busy the machine is (three jobs share two cores, and each goes quiet while it
requeues), so the time-limit runs pace every step to a fixed wall time (`tests/paced_steps.py`, through
`training.callbacks`): 200 s of work, more than two segments can hold even when both get the latest warning.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cli, log_text, profile_with, status_of, submit, wait_for, wait_state, wandb_offline_history

pytestmark = pytest.mark.slurm

PACED = f"{Path(__file__).resolve().parent / 'paced_steps.py'}:PacedSteps"
STEP_SECONDS = 0.25  # PacedSteps.SECONDS
WORK_SECONDS = 200  # wall seconds of paced work: more than two 2-minute segments hold (at most ~80 s each)


def sets(*pairs: str) -> list[str]:
    return [a for kv in pairs for a in ("--set", kv)]


def output_of(row: dict) -> Path:
    return Path(row["run_dir"]) / "output"


def events(row: dict) -> list[dict]:
    path = Path(row["run_dir"]) / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steps_logged(row: dict) -> list[int]:
    path = output_of(row) / "steps.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_time_limit_requeues_until_done_one_and_two_nodes(home, devcluster, demo_dir, tmp_path, monkeypatch):
    """Three runs at once, each with a 2-minute limit: 1 node x 1 process and 2 nodes x 1 process run to the end;
    a third, on a profile allowing one requeue, stops after it with its checkpoint saved and the reason shown."""
    run_yaml = str(demo_dir / "run.yaml")
    common = ("training.save_steps=1000000", "training.logging_steps=10", "training.lr_scheduler_type=cosine",
              f"training.callbacks=[{json.dumps(PACED)}]")
    steps = int(WORK_SECONDS / STEP_SECONDS)
    # room for more segments than the ~4 expected, so that only a bug can exhaust the requeues
    patient = profile_with(tmp_path, monkeypatch, "patient", "max_requeues: 10\n")
    runs = {n: submit("--nodes", str(n), "--gpus", "0", "--time", "00:02:00",
                      *sets(*common, f"training.max_steps={steps}", "logging.wandb=offline"), run_yaml,
                      cluster=patient)
            for n in (1, 2)}
    limited = profile_with(tmp_path, monkeypatch, "limited", "max_requeues: 1\n")
    stopping = submit("--nodes", "1", "--gpus", "0", "--time", "00:02:00",
                      *sets(*common, f"training.max_steps={steps * 2}", "logging.wandb=disabled"), run_yaml,
                      cluster=limited)
    for n, run in runs.items():
        row = wait_state(run, {"completed", "failed", "cancelled", "timeout"}, timeout=1200)
        log0 = log_text(run, 0)
        assert row["state"] == "completed", log0[-4000:]
        evs = events(row)
        requeued = [e for e in evs if e["event"] == "requeued"]
        assert "callbacks added: PacedSteps" in log0
        assert len(requeued) >= 2 and {e["reason"] for e in requeued} == {"time limit"}, evs
        assert row["requeues"] == len(requeued)
        # nothing lost, nothing done twice: the main process logged every optimizer step exactly once
        assert steps_logged(row) == list(range(1, steps + 1))
        summary = json.loads((output_of(row) / "summary.json").read_text())
        last_save = re.findall(r"checkpoint saved at step (\d+)", log0)[-1]
        assert summary["step"] == steps
        assert summary["resumed_from"] == str(output_of(row) / f"checkpoint-{last_save}")
        starts = [e for e in evs if e["event"] == "start"]
        assert len(starts) == len(requeued) + 1
        resumes = re.findall(r"rank=0 world_size=\d+ .* resume_from=(\S+)", log0)
        assert resumes[0] == "none" and all(r.startswith(str(output_of(row) / "checkpoint-")) for r in resumes[1:])
        assert len(resumes) == len(starts)
        # one wandb run across all segments: one offline folder per segment, same id, history continuing
        run_id = (output_of(row) / "wandb_run_id").read_text().strip()
        folders = sorted((Path(row["run_dir"]) / "wandb").glob("offline-run-*"))
        assert len(folders) == len(starts) and all(f.name.endswith(run_id) for f in folders)
        history = [wandb_offline_history(next(f.glob("run-*.wandb"))) for f in folders]
        assert {rid for rid, _ in history} == {run_id}
        logged = [s for _, seen in history for s in seen]
        assert logged == sorted(set(logged)) and logged[-1] == steps
        assert all(h[1] for h in history)  # every segment logged its own part of the history
        text = cli("status", run, "--segments", check=True).stdout
        assert f"requeues {len(requeued)}" in text
        assert text.count("requeued at step") == len(requeued) and "- time limit" in text
        if n == 2:  # both nodes stopped, saved once, and came back for every segment
            log1 = log_text(run, 1)
            assert log1.count("node_rank=1/2") == len(starts)
            assert log0.count("checkpoint saved at step") == log1.count("checkpoint saved at step") == len(requeued)


    # the limited run: one requeue, then a saved, deliberate stop, with the reason in `status`
    row = wait_state(stopping, {"stopped", "completed", "failed", "cancelled"}, timeout=600)
    kinds = [e["event"] for e in events(row)]
    assert row["state"] == "stopped" and kinds.count("requeued") == 1 and kinds[-1] == "stopped", kinds
    assert "max_requeues is 1" in row["reason"] and "hpc-finetune requeue" in row["reason"]
    saved = re.findall(r"checkpoint saved at step (\d+)", log_text(stopping))
    assert len(saved) == 2 and steps_logged(row) == list(range(1, int(saved[-1]) + 1))
    assert "stopped" in cli("status", check=True).stdout

def test_preemption_then_hard_kill_then_truncated_checkpoint(home, devcluster, demo_dir):
    run = submit("--nodes", "1", "--gpus", "0", *sets("training.max_steps=100000", "training.save_steps=50",
                                                       "training.logging_steps=10", "logging.wandb=disabled"),
                 str(demo_dir / "run.yaml"))
    row = wait_state(run, {"running"})
    job = row["job_id"]
    wait_for("step 60", lambda: len(steps_logged(row)) >= 60, timeout=180)

    # 1. preemption as the site's scheduler would do it: the warning signal, long before the time limit
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    req = wait_for("requeue on the signal", lambda: [e for e in events(row) if e["event"] == "requeued"])
    assert req[0]["reason"] == "preempted"
    wait_for("second segment", lambda: len([e for e in events(row) if e["event"] == "start"]) == 2, timeout=300)
    saved = int(re.search(r"checkpoint saved at step (\d+)", log_text(run)).group(1))
    assert (output_of(row) / f"checkpoint-{saved}" / "trainer_state.json").is_file()
    wait_for("progress after the requeue", lambda: len(steps_logged(row)) >= saved + 120, timeout=300)
    assert steps_logged(row)[:saved + 120] == list(range(1, saved + 121))  # the preemption lost no step
    assert f"resume_from={output_of(row) / f'checkpoint-{saved}'}" in log_text(run)

    # 2. a hard kill of the trainer: no warning, no save
    out = subprocess.run(["pgrep", "-f", f"hpc_finetune.train {row['run_dir']}/run.yaml"], capture_output=True,
                         text=True).stdout.split()
    assert out, "trainer process not found"
    for pid in out:
        subprocess.run(["kill", "-9", pid])
    row = wait_state(run, {"failed"}, timeout=180)
    killed_at = steps_logged(row)[-1]
    assert "does not retry failures" in row["reason"]

    # 3. the newest checkpoint was cut short when the job died: it must be skipped, not trusted, not deleted
    ckpts = sorted(int(p.name.split("-")[1]) for p in output_of(row).glob("checkpoint-*"))
    newest, previous = ckpts[-1], ckpts[-2]
    assert killed_at - newest < 50 + 10  # at most the steps since the last periodic checkpoint are lost
    # (the kill may itself have landed during that save, leaving it without these files: cut short all the same)
    (output_of(row) / f"checkpoint-{newest}" / "trainer_state.json").unlink(missing_ok=True)
    if (output_of(row) / f"checkpoint-{newest}" / "optimizer.pt").exists():
        with open(output_of(row) / f"checkpoint-{newest}" / "optimizer.pt", "r+b") as f:
            f.truncate(100)
    before = len(steps_logged(row))
    assert "new job" in cli("requeue", run, check=True).stdout
    row = status_of(run)
    wait_for("resumed training", lambda: len(steps_logged(row)) > before + 5, timeout=300)
    log = log_text(run)
    assert f"resume_from={output_of(row) / f'checkpoint-{previous}'}" in log
    assert steps_logged(row)[before] == previous + 1  # resumed right after the last complete checkpoint
    cli("cancel", run, check=True)
    text = cli("status", run, "--segments", check=True).stdout
    assert "- preempted" in text and "gave up at step" in text


def test_same_failure_twice_is_not_retried_forever(home, devcluster, demo_dir, tmp_path, monkeypatch):
    retrying = profile_with(tmp_path, monkeypatch, "retrying", "retry_on_failure: 3\n")
    # a data file that is gone by the time the job runs: the same failure at step 0 every time
    out = cli("submit", "--cluster", retrying, "--nodes", "1", "--gpus", "0", "--no-check",
              *sets(f"data.train_file={tmp_path / 'gone.jsonl'}", "data.eval_file=null", "logging.wandb=disabled"),
              str(demo_dir / "run.yaml"), check=True).stdout
    run = re.search(r"submitted run (\S+) as job", out).group(1)
    row = wait_state(run, {"failed", "completed"}, timeout=400)
    kinds = [e["event"] for e in events(row)]
    assert kinds.count("retrying") == 1 and kinds[-1] == "gave up", kinds
    assert "failed twice in a row the same way" in row["reason"]
    assert row["state"] == "failed" and row["requeues"] == 1
    assert "failed twice in a row" in cli("status", run, check=True).stdout
