"""A sweep on the local profile (no Slurm): the members are held runs the local runner (the stages' side of issue 12,
campaigns/localchain.py) starts at most --max-parallel at a time; each is a normal run that completes on its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import cli, wait_for

pytest.importorskip("hpc_finetune.campaigns.localchain", reason="the local runner (stages' branch) is not merged")


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_local_sweep_runs_members_one_at_a_time_and_compares_them(home, demo_dir):
    out = cli("sweep", str(demo_dir / "run.yaml"), "--grid", "training.learning_rate=1e-3,3e-3",
              "--max-parallel", "1", "--name", "loc", "--set", "logging.wandb=disabled", "--set",
              "training.max_steps=10", check=True).stdout
    assert re.search(r"submitted campaign loc: 2 member\(s\)", out), out

    def ended():
        rows = json.loads(cli("status", "loc", "--json", check=True).stdout)
        return rows if all(r["state"] not in ("pending", "running", "requeued", "unknown") for r in rows) else None

    rows = wait_for("both members to end", ended, timeout=600, every=2)
    assert [r["state"] for r in rows] == ["completed", "completed"], rows
    for row, lr in zip(rows, (1e-3, 3e-3)):
        cfg = yaml.safe_load((Path(row["run_dir"]) / "run.yaml").read_text())
        assert cfg["training"]["learning_rate"] == lr and row["member"] in (0, 1)
    first, second = (events(Path(r["run_dir"])) for r in rows)
    done0 = next(e["time"] for e in first if e["event"] == "completed")
    start1 = next(e["time"] for e in second if e["event"] == "start")
    assert start1 >= done0  # --max-parallel 1: the second started after the first ended
    ranked = json.loads(cli("compare", "loc", "--json", check=True).stdout)["members"]
    assert [m["rank"] for m in ranked] == [1, 2] and ranked[0]["final_loss"] <= ranked[1]["final_loss"]
