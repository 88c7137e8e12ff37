"""Chained stages on the local profile (no scheduler: the local runner owns the chain) and the CLI's refusals.

The Slurm versions of these (four jobs in order with sacct's dependencies, the kill-on-invalid-dep tail, the
requeue re-wiring) are in test_chains_slurm.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import cli, wait_for

FAIL = f"{Path(__file__).resolve().parent / 'failing_step.py'}:FailAtStep"


@pytest.fixture
def demo(home, demo_dir, tmp_path) -> Path:
    """The demo assets in a folder of this test's own (the run config names them relative to itself)."""
    target = tmp_path / "demo"
    shutil.copytree(demo_dir, target)
    return target


def status_rows(*runs: str) -> dict[str, dict]:
    rows = {}
    for run in runs:
        proc = cli("status", run, "--json", check=True)
        rows.update({d["run_id"]: d for d in json.loads(proc.stdout)})
    return rows


@pytest.mark.train
def test_local_chain_prepare_train_merge_eval_in_order_with_a_cache_hit(demo, home):
    proc = cli("submit", str(demo / "run.yaml"), "--prepare", "--then", "merge,eval", "--set", "training.max_steps=4",
               "--wait", check=True)
    assert "campaign demo: prepare -> train -> merge -> eval on local" in proc.stdout
    runs = home / "hpc-finetune" / "runs"
    rows = status_rows("demo-prepare", "demo-train", "demo-merge", "demo-eval")
    assert {r: d["state"] for r, d in rows.items()} == dict.fromkeys(rows, "completed")
    state = json.loads((runs / "demo" / "runner" / "state.json").read_text())
    order = ["demo-prepare", "demo-train", "demo-merge", "demo-eval"]
    for before, after in zip(order, order[1:]):  # each started after the one before it ended
        assert state[after]["started"] >= state[before]["ended"]
    summary = json.loads((runs / "demo-train" / "output" / "summary.json").read_text())
    assert summary["tokenized_cache"] == "hit"  # the prepare job built it
    assert "tokenized cache miss" in next((runs / "demo-prepare" / "jobs").glob("*_0_log.out")).read_text()
    merged = runs / "demo-train" / "output" / "merged"
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    samples = [json.loads(x) for x in (runs / "demo-train" / "eval" / "samples.jsonl").read_text().splitlines()]
    assert samples and all(isinstance(s["tuned"], str) for s in samples)  # the merged model loaded and generated
    eval_log = next((runs / "demo-eval" / "jobs").glob("*_0_log.out")).read_text()
    assert f"--model {merged}" in eval_log
    records = {r: json.loads((runs / r / "record.json").read_text()) for r in order}
    assert records["demo-merge"]["after"] == ["demo-train"] and records["demo-eval"]["kind"] == "eval"
    assert {rec["campaign"] for rec in records.values()} == {"demo"}


@pytest.mark.train
def test_local_chain_whose_training_fails_shows_its_stages_skipped_and_leaves_nothing_running(demo, home):
    proc = cli("submit", str(demo / "run.yaml"), "--then", "merge,eval", "--set", "training.max_steps=6",
               "--set", f"training.callbacks=['{FAIL}']", "--wait")
    assert proc.returncode == 1, proc.stderr
    rows = status_rows("demo-train", "demo-merge", "demo-eval")
    assert rows["demo-train"]["state"] == "failed"
    assert rows["demo-merge"]["state"] == rows["demo-eval"]["state"] == "skipped: train failed"
    table = cli("status", check=True).stdout  # the chain folded into one campaign row
    assert "0 running, 0 pending, 1 failed; merge+eval skipped: train failed" in table
    expanded = cli("status", "demo", check=True).stdout.splitlines()
    assert not [line for line in expanded if line.split()[1:2] == ["pending"]], expanded
    assert sum("skipped: train failed" in line for line in expanded) >= 2, expanded
    runs = home / "hpc-finetune" / "runs"
    state = json.loads((runs / "demo" / "runner" / "state.json").read_text())
    assert {k: v["state"] for k, v in state.items()} == {"demo-train": "failed", "demo-merge": "skipped",
                                                          "demo-eval": "skipped"}
    for run in ("demo-merge", "demo-eval"):  # never started: no job, no log
        rec = json.loads((runs / run / "record.json").read_text())
        assert rec["segments"] == [] and rec["state"] == "cancelled"
    assert not (runs / "demo-train" / "output" / "merged").exists()


@pytest.mark.train
@pytest.mark.parametrize("target", ["demo-train", "demo"])  # the failed run, or the chain (its failed job found)
def test_local_requeue_of_the_failed_training_runs_its_skipped_stages_after_it(demo, home, target):
    once = f"{Path(__file__).resolve().parent / 'failing_step.py'}:FailOnce"
    proc = cli("submit", str(demo / "run.yaml"), "--then", "merge", "--set", "training.max_steps=4",
               "--set", f"training.callbacks=['{once}']", "--wait")
    assert proc.returncode == 1 and status_rows("demo-merge")["demo-merge"]["state"] == "skipped: train failed"
    out = cli("requeue", target, check=True).stdout
    assert "run demo-train: new job" in out and "stage demo-merge (merge) will run after it again" in out
    wait_for("the requeued chain to complete",
             lambda: all(d["state"] == "completed" for d in status_rows("demo-train", "demo-merge").values()),
             timeout=600)
    runs = home / "hpc-finetune" / "runs"
    assert (runs / "demo-train" / "output" / "merged" / "config.json").is_file()
    assert (runs / "demo" / "runner-2" / "state.json").is_file()  # a runner of its own for the re-wired chain


@pytest.mark.train
def test_cancelling_a_held_local_stage_keeps_the_runner_from_starting_it(demo, home):
    cli("submit", str(demo / "run.yaml"), "--then", "merge,eval", "--set", "training.max_steps=20", check=True)
    out = cli("cancel", "demo-merge", check=True).stdout
    assert "cancelled run demo-merge before its job started" in out
    runs = home / "hpc-finetune" / "runs"
    state_file = runs / "demo" / "runner" / "state.json"
    wait_for("the runner to end", lambda: state_file.exists() and all(
        v["state"] in ("completed", "failed", "skipped") for v in json.loads(state_file.read_text()).values()),
        timeout=600)
    rows = status_rows("demo-train", "demo-merge", "demo-eval")
    assert rows["demo-train"]["state"] == "completed"
    assert rows["demo-merge"]["state"] == "cancelled" and not rows["demo-merge"]["job_id"]  # never had a job
    assert rows["demo-eval"]["state"] == "skipped: merge cancelled"
    assert not (runs / "demo-train" / "output" / "merged").exists()


@pytest.mark.train
def test_a_failed_stage_skips_the_next_and_can_be_requeued_itself_once_fixed(demo, home):
    # a prompts file whose second line is broken: only the eval job reads it all, on the node
    prompts = demo / "prompts.jsonl"
    good = prompts.read_text()
    prompts.write_text(good.splitlines()[0] + "\n{not json\n")
    proc = cli("submit", str(demo / "run.yaml"), "--then", "eval,report", "--set", "training.max_steps=2", "--wait")
    assert proc.returncode == 1
    rows = status_rows("demo-train", "demo-eval", "demo-report")
    assert [rows[r]["state"] for r in ("demo-train", "demo-eval", "demo-report")] == \
        ["completed", "failed", "skipped: eval failed"]
    assert "line 2 is not JSON" in cli("logs", "demo-eval", check=True).stdout
    prompts.write_text(good)  # fixed: the stage alone runs again, and the one after it
    out = cli("requeue", "demo-eval", check=True).stdout
    assert "eval stage demo-eval: queued again" in out
    runs = home / "hpc-finetune" / "runs"
    state_file = runs / "demo" / "runner-2" / "state.json"  # a runner of its own for eval and report
    wait_for("the requeued stages to end", lambda: state_file.exists() and all(
        v["state"] in ("completed", "failed", "skipped") for v in json.loads(state_file.read_text()).values()),
        timeout=600)
    assert {k: v["state"] for k, v in json.loads(state_file.read_text()).items()} == \
        {"demo-eval": "completed", "demo-report": "completed"}
    assert len(json.loads((runs / "demo-eval" / "record.json").read_text())["segments"]) == 2
    assert (runs / "demo-train" / "eval" / "samples.jsonl").is_file()
    assert (runs / "demo-train" / "report" / "report.md").is_file()


@pytest.mark.parametrize("args,message", [
    (["--then", "merge,evl"], "hpc-finetune submit: error: --then: unknown stage 'evl'; choose from merge, eval, "
                              "report"),
    (["--stage-time", "00:10:00"], "--stage-time: only with --prepare or --then"),
    (["--then", "merge", "--stage-time", "8-00:00:00"], "the merge stage"),
    (["--then", "eval", "--stage-mem", "lots"], "--stage-mem: 'lots': memory like 64G"),
    (["--then", "merge", "--set", "method=full"], "method: --then merge: method full trains the whole model"),
])
def test_bad_stage_flags_are_one_line_and_nothing_is_created(demo, home, args, message):
    proc = cli("submit", str(demo / "run.yaml"), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (home / "hpc-finetune").exists() and not (home / "state").exists()


def test_dry_run_names_the_chain_and_creates_nothing(demo, home):
    proc = cli("submit", str(demo / "run.yaml"), "--prepare", "--then", "eval,merge", "--dry-run", check=True)
    assert "would queue the chain prepare -> train -> merge -> eval" in proc.stderr
    assert not (home / "hpc-finetune").exists()
