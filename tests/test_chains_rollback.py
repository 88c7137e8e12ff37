"""Nothing half-queued: when a later job of a chain (submit --prepare/--then) or of a sweep's stages (sweep --prepare
--then) cannot be queued, the jobs already queued are cancelled, every record says CANCELLED "the chain could not be
queued", no local runner starts, and the CLI prints one error line (exit 2).

The failure is injected (the only fake here): queuing the merge stage raises the error a real refusal would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hpc_finetune.campaigns import chain
from hpc_finetune.errors import UserError


@pytest.fixture
def demo(home, demo_dir, tmp_path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_dir, target)
    return target


@pytest.fixture
def merge_refused(monkeypatch):
    real = chain.queue_stage

    def queue_stage(*args, **kwargs):
        stage = args[4] if len(args) > 4 else kwargs["stage"]
        if stage == "merge":
            raise UserError("injected: the merge job was refused", source="test")
        return real(*args, **kwargs)

    monkeypatch.setattr(chain, "queue_stage", queue_stage)


def campaign_records(campaign: str) -> list[dict]:
    from hpc_finetune.records import Registry

    rows = Registry().campaign_rows(campaign)
    return [json.loads((Path(r["run_dir"]) / "record.json").read_text()) for r in rows]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    from hpc_finetune.cli.main import main

    rc = main(list(args))
    return rc, capsys.readouterr().err


def assert_nothing_live(campaign_dir: Path, records: list[dict], kinds: set[str]) -> None:
    assert {r["kind"] for r in records} == kinds, records
    for r in records:
        assert r["state"] == "cancelled" and r["reason"] == chain.QUEUE_FAILED, r
        assert r["segments"] == []  # held local runs: never given a job
    assert not list(campaign_dir.glob("runner*"))  # no local runner was started that could start them


def test_a_sweep_whose_merge_stage_cannot_be_queued_leaves_nothing_live(demo, home, capsys, merge_refused):
    rc, err = run_cli(capsys, "sweep", str(demo / "run.yaml"), "--grid", "training.learning_rate=1e-3,3e-3",
                      "--prepare", "--then", "merge", "--name", "rb", "--no-check")
    assert rc == 2 and err.strip().splitlines() == ["hpc-finetune sweep: error: test: injected: the merge job was "
                                                    "refused"], err
    runs = home / "hpc-finetune" / "runs"
    records = campaign_records("rb")
    # the prepare job, both members and the select job queued before the merge: all recorded, none live
    assert len(records) == 4 and sorted(r["member"] for r in records if r["kind"] == "train") == [0, 1], records
    assert_nothing_live(runs / "rb", records, {"prepare", "select", "train"})


def test_a_chain_whose_second_stage_cannot_be_queued_cancels_the_first(demo, home, capsys, monkeypatch):
    """submit --prepare --then merge,eval with the eval job refused: prepare, train and merge were queued before it
    (the merge record used to stay behind, pending forever: queue_stages' records reached the rollback only when it
    returned)."""
    real = chain.queue_stage

    def queue_stage(*args, **kwargs):
        if (args[4] if len(args) > 4 else kwargs["stage"]) == "eval":
            raise UserError("injected: the eval job was refused", source="test")
        return real(*args, **kwargs)

    monkeypatch.setattr(chain, "queue_stage", queue_stage)
    rc, err = run_cli(capsys, "submit", str(demo / "run.yaml"), "--prepare", "--then", "merge,eval", "--no-check")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "injected: the eval job was refused" in err, err
    records = campaign_records("demo")
    assert_nothing_live(home / "hpc-finetune" / "runs" / "demo", records, {"prepare", "train", "merge"})
    from hpc_finetune.campaigns.store import Campaign

    campaign = Campaign.load(home / "hpc-finetune" / "runs" / "demo")  # written through store.py's format
    assert campaign.kind == "chain" and [m.run_id for m in campaign.members] == ["demo-train"]
    assert campaign.extra["chain"] == ["prepare", "train", "merge", "eval"]


def test_a_sweep_whose_second_prepare_job_cannot_be_queued_leaves_nothing_behind(demo, home, capsys, monkeypatch):
    """The failure comes inside the sweep's own submission (its before_submit hook): the sweep removes its campaign
    and members, and the prepare job already queued goes with them (no record of a campaign that does not exist)."""
    from hpc_finetune.records import Registry

    real = chain.queue_stage
    seen = []

    def queue_stage(*args, **kwargs):
        if (args[4] if len(args) > 4 else kwargs["stage"]) == "prepare":
            seen.append(1)
            if len(seen) == 2:
                raise UserError("injected: the second prepare job was refused", source="test")
        return real(*args, **kwargs)

    monkeypatch.setattr(chain, "queue_stage", queue_stage)
    rc, err = run_cli(capsys, "sweep", str(demo / "run.yaml"), "--grid", "training.max_length=32,64", "--prepare",
                      "--then", "merge", "--name", "rb2", "--no-check")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "second prepare job was refused" in err, err
    assert len(seen) == 2  # one prepare job per tokenized cache: the first was queued before the refusal
    runs = home / "hpc-finetune" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == [], list(runs.iterdir())
    assert Registry().rows() == []
