"""The select stage's program (job/select.py): the best member by the sweeps' one metric, said and written.

Runs `python -m hpc_finetune.job.select` in a process of its own on run directories laid out as a sweep leaves
them. The metric itself is campaigns/ranking.py's (the sweeps branch): these tests need it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hpc_finetune.campaigns.ranking", reason="campaigns/ranking.py comes with the sweeps branch")


def member(root: Path, run_id: str, *, final_loss=None, eval_loss=None, final=True) -> None:
    run_dir = root / run_id
    out = run_dir / "output"
    (out / "final" if final else out).mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps({"run_id": run_id, "output_dir": str(out)}))
    if final_loss is not None:
        (out / "summary.json").write_text(json.dumps({"final_loss": final_loss, "step": 10, "max_steps": 10}))
    if eval_loss is not None:
        (run_dir / "eval").mkdir()
        (run_dir / "eval" / "metrics.json").write_text(json.dumps({"tuned": {"eval_loss": eval_loss}}))


def campaign(root: Path, ids: list[str]) -> Path:
    cdir = root / "sw"
    cdir.mkdir()
    (cdir / "campaign.json").write_text(json.dumps({"campaign_id": "sw", "members": [
        {"index": i, "run_id": r, "values": {}} for i, r in enumerate(ids)]}))
    return cdir


def select(cdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_finetune.job.select", str(cdir)], capture_output=True,
                          text=True, timeout=120)


def test_best_by_final_train_loss_when_not_every_member_has_an_eval_loss(tmp_path):
    member(tmp_path, "sw-a", final_loss=2.0, eval_loss=1.0)
    member(tmp_path, "sw-b", final_loss=1.5)
    member(tmp_path, "sw-c", final_loss=0.5, final=False)  # failed before its final model: not a candidate
    cdir = campaign(tmp_path, ["sw-a", "sw-b", "sw-c"])
    proc = select(cdir)
    assert proc.returncode == 0, proc.stderr
    sel = json.loads((cdir / "selection.json").read_text())
    assert (sel["run_id"], sel["metric"], sel["value"]) == ("sw-b", "train_loss", 1.5)
    assert sel["run_dir"] == str(tmp_path / "sw-b") and sel["output_dir"] == str(tmp_path / "sw-b" / "output")
    assert "select: sw-b by train_loss 1.5000" in proc.stdout and "sw-c: no final model" in proc.stdout


def test_best_by_eval_loss_when_every_candidate_has_one(tmp_path):
    member(tmp_path, "sw-a", final_loss=1.0, eval_loss=3.0)
    member(tmp_path, "sw-b", final_loss=2.0, eval_loss=2.5)
    cdir = campaign(tmp_path, ["sw-a", "sw-b"])
    assert select(cdir).returncode == 0
    sel = json.loads((cdir / "selection.json").read_text())
    assert (sel["run_id"], sel["metric"], sel["value"]) == ("sw-b", "eval_loss", 2.5)


def test_no_member_with_a_final_model_fails_the_stage_and_writes_nothing(tmp_path):
    member(tmp_path, "sw-a", final_loss=1.0, final=False)
    cdir = campaign(tmp_path, ["sw-a"])
    proc = select(cdir)
    assert proc.returncode == 1 and "no member to follow" in proc.stdout
    assert not (cdir / "selection.json").exists()


def test_a_stage_after_select_follows_the_chosen_member_at_run_time(tmp_path):
    from hpc_finetune.job.stagejob import StageProgram

    member(tmp_path, "sw-a", final_loss=2.0)
    member(tmp_path, "sw-b", final_loss=1.0)
    cdir = campaign(tmp_path, ["sw-a", "sw-b"])
    prog = StageProgram(stage="merge", chain=["train", "select", "merge"], campaign_dir=str(cdir), selected=True)
    with pytest.raises(RuntimeError, match="did the select stage run"):
        prog.command()  # queued long before the selector ran: nothing is decided at submit time
    assert select(cdir).returncode == 0
    assert prog.command()[3:] == ["hpc_finetune", "merge", str(tmp_path / "sw-b" / "output" / "final"),
                                  "--out", str(tmp_path / "sw-b" / "output" / "merged")]


def test_every_candidate_is_reported_under_the_one_metric_the_choice_used(tmp_path):
    # sw-a has an eval loss (0.5) lower than anyone's train loss, sw-b has none: the choice is by train loss, so
    # sw-a's line and its selection.json value must be its train loss (2.0), not its eval loss
    member(tmp_path, "sw-a", final_loss=2.0, eval_loss=0.5)
    member(tmp_path, "sw-b", final_loss=1.5)
    cdir = campaign(tmp_path, ["sw-a", "sw-b"])
    proc = select(cdir)
    assert proc.returncode == 0, proc.stderr
    sel = json.loads((cdir / "selection.json").read_text())
    assert (sel["run_id"], sel["metric"], sel["value"]) == ("sw-b", "train_loss", 1.5)
    assert {rid: c["value"] for rid, c in sel["candidates"].items()} == {"sw-a": 2.0, "sw-b": 1.5}
    assert all(c["metric"] == "train_loss" for c in sel["candidates"].values())
    assert sel["value"] == min(c["value"] for c in sel["candidates"].values())
    assert sel["candidates"]["sw-a"]["eval_loss"] == 0.5  # extra, labelled, not the metric
    lines = proc.stdout.splitlines()
    assert [l.strip() for l in lines if l.strip().startswith("sw-a:")] == ["sw-a: train_loss 2.0000 (eval_loss 0.5000)"]
    assert [l.strip() for l in lines if l.strip().startswith("sw-b:")] == ["sw-b: train_loss 1.5000   <- best"]
