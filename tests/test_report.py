"""`hpc-finetune report`: plots and report.md from a run's own progress records, requeue segments marked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, cli, recorded_run


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def train_row(step: int, loss: float) -> dict:
    return {"kind": "train", "step": step, "max_steps": 60, "loss": loss, "learning_rate": 1e-3 * (1 - step / 100),
            "grad_norm": 1.0 / step, "tokens_per_s": 1000.0 + step, "time": 0.0}


def requeued_twice(tmp_path: Path) -> Path:
    """A run requeued at the time limit at step 20 and again at 40; the second segment logged step 40 and failed
    before its checkpoint, so step 40 comes twice (the later record is the one the run went on from)."""
    run_dir = recorded_run(tmp_path / "runs", "sft", segments=3)
    out = run_dir / "output"
    rows = [{"step": 5, "max_steps": 60, "loss": 3.0, "learning_rate": 1e-3}]  # written before records had a kind
    rows += [train_row(s, 3.0 - s / 40) for s in range(10, 45, 5)]
    rows += [{"kind": "eval", "step": 20, "eval_loss": 2.6, "eval_runtime": 1.0}, "not json"]
    rows += [train_row(40, 1.9)] + [train_row(s, 3.0 - s / 40) for s in range(45, 65, 5)]
    rows += [{"kind": "eval", "step": 40, "eval_loss": 2.2}, {"kind": "eval", "step": 60, "eval_loss": 1.6}]
    (out / "progress.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    (out / "progress.json").write_text(json.dumps(rows[-3]))
    write_jsonl(run_dir / "attempts.jsonl", [
        {"event": "start", "step": 0}, {"event": "requeued", "reason": "time limit", "step": 20},
        {"event": "start", "step": 20}, {"event": "requeued", "reason": "preempted", "step": 40},
        {"event": "start", "step": 40}, {"event": "completed", "step": 60}])
    (run_dir / "run.yaml").write_text("name: sft\nmethod: lora\nmodel: {path: /models/llama}\n"
                                      "training: {max_steps: 60, learning_rate: 0.001}\n")
    return run_dir


def test_report_of_a_run_requeued_twice(home, tmp_path):
    run_dir = requeued_twice(tmp_path)
    proc = cli("report", "sft", check=True)
    report = run_dir / "report"
    assert str(report) in proc.stdout
    assert {p.name for p in report.iterdir()} == {"loss.png", "training.png", "series.json", "report.md"}
    assert all((report / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in ("loss.png", "training.png"))
    series = json.loads((report / "series.json").read_text())
    loss = series["plots"]["loss.png"]
    # one continuous curve: every step once, in order; the repeated step 40 is the later record
    assert loss["train loss"]["step"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    assert loss["train loss"]["value"][7] == 1.9
    assert loss["eval loss"] == {"step": [20, 40, 60], "value": [2.6, 2.2, 1.6]}
    training = series["plots"]["training.png"]
    assert training["grad norm"]["step"][0] == 10  # the old record had no grad norm: not plotted as zero
    assert training["tokens/s"]["value"][-1] == 1060.0
    assert series["segment_boundaries"] == [{"step": 20, "why": "time limit"}, {"step": 40, "why": "preempted"}]
    md = (report / "report.md").read_text()
    for needle in ("| model.path | `/models/llama` |", "- step 20: time limit", "- step 40: preempted",
                   "1 node(s) x 4 GPU(s)", "GPU-hours: 2.00", "| 3 | 102 | auto-requeue | completed |",
                   "last eval loss: 1.6 (step 60)", "![loss](loss.png)"):
        assert needle in md, needle


def test_report_of_a_run_still_going_shows_what_exists(home, tmp_path):
    run_dir = recorded_run(tmp_path / "runs", "live", state="running")
    write_jsonl(run_dir / "output" / "progress.jsonl", [train_row(5, 3.0), train_row(10, 2.5)])
    cli("report", "live", check=True)
    md = (run_dir / "report" / "report.md").read_text()
    assert "step: 10 of 60 (still going)" in md and "State: **running**" in md
    assert json.loads((run_dir / "report" / "series.json").read_text())["segment_boundaries"] == []
    # nothing logged yet: a report that says so, no empty plots
    empty = recorded_run(tmp_path / "runs", "queued", state="pending")
    cli("report", "queued", check=True)
    assert sorted(p.name for p in (empty / "report").iterdir()) == ["report.md", "series.json"]
    assert "No progress recorded yet." in (empty / "report" / "report.md").read_text()


def test_without_matplotlib_it_says_how_to_install_and_writes_nothing(home, tmp_path):
    run_dir = requeued_twice(tmp_path)
    code = ("import sys\nsys.modules['matplotlib'] = None\nsys.modules['matplotlib.figure'] = None\n"
            "from hpc_finetune.cli.main import main\nsys.exit(main(['report', 'sft']))\n")
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and "pip install 'hpc-finetune[report]'" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and not (run_dir / "report").exists()


def test_report_imports_no_training_library(home, tmp_path):
    requeued_twice(tmp_path)
    code = ("import sys\nfrom hpc_finetune.cli.main import main\nmain(['report', 'sft'])\n"
            "print([m for m in ('torch', 'transformers', 'datasets', 'wandb') if m in sys.modules])\n")
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout.strip().endswith("[]")


# --- one real run, requeued twice (the segments logged as the node program logs them) ---------------------------

def _segment(args: list[str], env: dict, out: Path, stop_after: int | None) -> None:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_after is not None:
        deadline = time.time() + 300
        while len((out / "steps.log").read_text().split() if (out / "steps.log").exists() else []) < stop_after:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGUSR2)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log


@pytest.mark.train
def test_real_run_requeued_twice_reports_one_curve_and_syncs_each_segment(home, demo_dir, tmp_path):
    from hpc_finetune.job.segments import current_step, log_event

    run_dir = recorded_run(tmp_path / "runs", "demo", segments=3, gpus=0)
    out = run_dir / "output"
    shutil.copy(demo_dir / "run.yaml", run_dir / "run.yaml")
    args = [PY, "-m", "hpc_finetune.train", str(demo_dir / "run.yaml"), "--set", "logging.wandb=offline",
            "--set", f"output_dir={out}", "--set", "training.max_steps=36", "--set", "training.save_steps=1000",
            "--set", "training.logging_steps=2", "--set", "training.eval_strategy=steps",
            "--set", "training.eval_steps=12"]
    env = dict(os.environ, WANDB_MODE="offline")
    for i, stop_after in enumerate((10, 22, None)):
        log_event(run_dir, "start", step=current_step(out))
        _segment(args, env, out, stop_after)
        if stop_after is not None:
            log_event(run_dir, "requeued", reason="time limit", step=current_step(out))
    cli("report", "demo", check=True)
    series = json.loads((run_dir / "report" / "series.json").read_text())
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    train = {p["step"]: p for p in progress if p["kind"] == "train"}
    evals = {p["step"]: p for p in progress if p["kind"] == "eval"}
    plotted = series["plots"]["loss.png"]
    assert plotted["train loss"] == {"step": sorted(train), "value": [train[s]["loss"] for s in sorted(train)]}
    assert sorted(train) == list(range(2, 37, 2))  # one continuous curve over the three segments
    assert plotted["eval loss"]["value"] == [evals[s]["eval_loss"] for s in sorted(evals)] and len(evals) == 3
    assert series["plots"]["training.png"]["grad norm"]["value"] == [train[s]["grad_norm"] for s in sorted(train)]
    boundaries = [b["step"] for b in series["segment_boundaries"]]
    assert len(boundaries) == 2 and 10 <= boundaries[0] < boundaries[1] < 36
    # every segment wrote one offline folder, all with the run's one wandb id; dry run lists them in order
    run_id = (out / "wandb_run_id").read_text().strip()
    folders = sorted((out / "wandb").glob("offline-run-*"))
    assert len(folders) == 3 and all(f.name.endswith("-" + run_id) for f in folders)
    listed = [line.split()[-1] for line in cli("sync", "demo", "--dry-run", check=True).stdout.splitlines()
              if "offline-run-" in line]
    assert listed == [str(f) for f in folders]


def test_segment_boundaries_say_why_each_segment_began(tmp_path):
    from hpc_finetune.runfiles import segment_boundaries

    write_jsonl(tmp_path / "attempts.jsonl", [
        {"event": "start", "step": 0}, {"event": "requeued", "reason": "preempted", "step": 7},
        {"event": "checkpointed", "step": 7}, {"event": "start", "step": 7},
        {"event": "trainer exited", "returncode": 1, "step": 9}, {"event": "retrying", "status": 1, "step": 9},
        {"event": "start", "step": 5}, {"event": "stopped", "reason": "requeue limit", "step": 12},
        {"event": "start", "step": 12}, {"event": "completed", "step": 20}])
    assert [(b.step, b.why) for b in segment_boundaries(tmp_path)] == [
        (7, "preempted"), (5, "retry after exit status 1"), (12, "requeued by hand")]
