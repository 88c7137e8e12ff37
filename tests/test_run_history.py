"""Run history in one vocabulary: a run's job segments (record.json), the events its jobs logged
(RUN_DIR/attempts.jsonl), its State (one table from scheduler states, one rule that reads the events), and the
index's rows by column name. Old run directories and old registries keep working."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import cli
from hpc_finetune.records import COLUMNS, IndexRow, Registry, RunRecord, Segment
from hpc_finetune.states import ENDED, LIVE, REQUEUEABLE, SLURM_STATES, Event, State, from_slurm, run_state
from test_gpu_hours import fake_sacct


def test_state_is_a_plain_word_wherever_it_is_stored():
    assert State.PENDING == "pending" and f"{State.NODE_FAIL}" == "node_fail" and str(State.STOPPED) == "stopped"
    assert json.dumps({"s": State.RUNNING}) == '{"s": "running"}'
    assert State.parse("timeout") is State.TIMEOUT and State.parse("no such state") is State.UNKNOWN
    assert set(SLURM_STATES.values()) | {State.STOPPED, State.UNKNOWN} == set(State)
    assert LIVE.isdisjoint(ENDED) and LIVE | ENDED == set(State) and REQUEUEABLE <= ENDED


@pytest.mark.parametrize("raw,state", [("CANCELLED by 0", State.CANCELLED), ("COMPLETED", State.COMPLETED),
                                       ("REQUEUED", State.REQUEUED), ("OUT_OF_MEMORY", State.FAILED),
                                       ("DEADLINE", State.TIMEOUT), ("RUNNING+", State.RUNNING), ("", State.UNKNOWN),
                                       ("SOMETHING_NEW", State.UNKNOWN)])
def test_one_table_from_slurm_states(raw, state):
    assert from_slurm(raw) is state


def test_event_words_are_the_ones_old_runs_have_on_disk(tmp_path):
    from hpc_finetune.segments import log_event, read_events

    assert {str(e) for e in Event} == {"start", "trainer exited", "trainer error", "completed", "checkpointed",
                                       "requeued", "stopped", "terminated", "retrying", "gave up"}
    log_event(tmp_path, Event.GAVE_UP, reason="x")
    assert json.loads((tmp_path / "attempts.jsonl").read_text())["event"] == "gave up"
    assert read_events(tmp_path)[0]["event"] == Event.GAVE_UP


def ev(*names: str) -> list[dict]:
    return [{"event": n, "job_id": "7", "restart": 0} for n in names]


@pytest.mark.parametrize("scheduler,events,state", [
    # ended on purpose at the requeue limit: the job exits non-zero (FAILED to Slurm), the run is STOPPED
    (State.FAILED, ev("start", "stopped"), State.STOPPED),
    (State.FAILED, ev("start", "stopped", "trainer exited", "trainer error"), State.STOPPED),
    # a real failure, and a failure of a segment that started after an earlier stop
    (State.FAILED, ev("start", "gave up"), State.FAILED),
    (State.FAILED, ev("start", "stopped", "start"), State.FAILED),
    (State.FAILED, [], State.FAILED),
    # every other scheduler state stands, whatever the events
    (State.COMPLETED, ev("start", "stopped"), State.COMPLETED),
    (State.RUNNING, ev("start"), State.RUNNING),
    (State.TIMEOUT, ev("start", "requeued"), State.TIMEOUT),
    ("failed", ev("start", "stopped"), State.STOPPED),  # a plain word from an old record
])
def test_the_run_state_rule(scheduler, events, state):
    assert run_state(scheduler, events) is state


def test_status_applies_the_rule(home, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "output").mkdir(parents=True)
    rec = RunRecord(run_id="r1", name="r1", cluster="devcluster", scheduler="slurm", run_dir=str(run_dir),
                    output_dir=str(run_dir / "output"), created=1.0, nodes=1, gpus_per_node=1, processes_per_node=1,
                    time_seconds=600, segments=[Segment(job_id="7", started_by="submit", submitted=1.0,
                                                        state=State.RUNNING)], state=State.RUNNING)
    rec.save()
    Registry().upsert(rec)
    (run_dir / "attempts.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev("start", "stopped")))
    env = fake_sacct(tmp_path, ["7|FAILED|600|gpu1|1:0|cpu=1,gres/gpu=1,node=1"])
    row = json.loads(cli("status", "r1", "--json", env=env, check=True).stdout)[0]
    assert row["state"] == "stopped"
    saved = json.loads((run_dir / "record.json").read_text())
    assert saved["state"] == "stopped" and saved["segments"][0]["state"] == "stopped"


# record.json exactly as the previous release wrote it (RunRecord with plain state strings)
OLD_RECORD = {
    "run_id": "old-1", "name": "old", "cluster": "devcluster", "scheduler": "slurm", "run_dir": "RUN",
    "output_dir": "RUN/output", "created": 1700000000.0, "nodes": 1, "gpus_per_node": 2, "processes_per_node": 2,
    "time_seconds": 3600,
    "segments": [
        {"job_id": "41", "started_by": "submit", "submitted": 1700000000.0, "state": "timeout", "reason": "TIMEOUT",
         "elapsed": 3600, "nodelist": "gpu1", "gpu_seconds": 7200.0},
        {"job_id": "42", "started_by": "requeue", "submitted": 1700004000.0, "state": "running", "reason": "",
         "elapsed": 60, "nodelist": "gpu2", "gpu_seconds": None}],
    "state": "running", "reason": "", "requeues": 1, "auto_requeues": 0, "kind": "train"}


def test_an_old_run_directory_still_loads_and_reports(home, tmp_path):
    run_dir = tmp_path / "old-1"
    (run_dir / "output").mkdir(parents=True)
    old = json.loads(json.dumps(OLD_RECORD).replace('"RUN', json.dumps(str(run_dir))[:-1]))
    (run_dir / "record.json").write_text(json.dumps(old, indent=1) + "\n")
    (run_dir / "attempts.jsonl").write_text(
        json.dumps({"event": "start", "job_id": "42", "restart": 0, "host": "gpu2", "time": 1700004000.0,
                    "step": 10}) + "\n")
    rec = RunRecord.load(run_dir)
    assert rec.state is State.RUNNING and [s.state for s in rec.segments] == [State.TIMEOUT, State.RUNNING]
    assert rec.gpu_hours == pytest.approx((7200 + 60 * 2) / 3600)
    rec.save()  # written back with the same keys and plain words
    assert json.loads((run_dir / "record.json").read_text()) == old
    Registry().upsert(rec)
    env = fake_sacct(tmp_path, ["42|RUNNING|120|gpu2|0:0|cpu=2,gres/gpu=2,node=1"])
    out = cli("status", str(run_dir), "--segments", env=env, check=True).stdout
    assert "1. job 41 (submit) timeout TIMEOUT" in out and "2. job 42 (requeue) running" in out
    assert "job 42 restart 0 on gpu2: start at step 10" in out


OLD_SCHEMA = ("CREATE TABLE runs (run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, cluster TEXT, scheduler TEXT, "
              "created REAL, nodes INTEGER, gpus_per_node INTEGER, time_seconds INTEGER, job_id TEXT, state TEXT, "
              "reason TEXT, elapsed INTEGER, segments INTEGER, requeues INTEGER, progress TEXT, gpu_hours REAL)")


def test_an_old_registry_opens_and_named_rows_land_in_their_columns(home, tmp_path):
    path = Path(os.environ["HPC_FINETUNE_HOME"]) / "registry.sqlite"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute(OLD_SCHEMA)  # as the previous release created it, rows written by position
    db.execute("INSERT INTO runs VALUES ('old', '/w/old', 'c', 'slurm', 1.0, 1, 4, 60, '5', 'completed', '', 60, 1, "
               "0, NULL, 0.5)")
    db.commit()
    db.close()
    reg = Registry()
    assert [r["run_id"] for r in reg.rows()] == ["old"] and reg.rows("old")[0]["gpu_hours"] == 0.5
    assert tuple(r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(runs)")) == COLUMNS
    rec = RunRecord(run_id="new", name="new", cluster="devcluster", scheduler="slurm", run_dir="/w/new",
                    output_dir="/w/new/output", created=2.0, nodes=2, gpus_per_node=4, processes_per_node=4,
                    time_seconds=3600, segments=[Segment(job_id="9", started_by="submit", submitted=2.0,
                                                         state=State.TIMEOUT, elapsed=3599)],
                    state=State.TIMEOUT, reason="time limit", requeues=1, auto_requeues=2)
    reg.upsert(rec, {"step": 3})
    row = dict(reg.rows("new")[0])
    assert row == {"run_id": "new", "run_dir": "/w/new", "cluster": "devcluster", "scheduler": "slurm",
                   "created": 2.0, "nodes": 2, "gpus_per_node": 4, "time_seconds": 3600, "job_id": "9",
                   "state": "timeout", "reason": "time limit", "elapsed": 3599, "segments": 1, "requeues": 3,
                   "progress": '{"step": 3}', "gpu_hours": round(3599 * 8 / 3600, 4)}
    reg.insert_many([IndexRow(run_id="bare", run_dir="/w/bare", created=3.0)])  # unnamed columns stay NULL
    assert dict(reg.rows("bare")[0])["state"] is None
