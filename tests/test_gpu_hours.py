"""GPU-hours: sacct's elapsed x GPUs for every instance of a job (a job requeued in place keeps its id, and plain
`sacct -X` shows only its last instance), kept in the run record and the index once the run has ended."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

from conftest import cli
from hpc_finetune.records import Registry, RunRecord, Segment
from hpc_finetune.scheduler.slurm import tres_gpus


def test_gpus_are_read_from_alloc_tres():
    assert tres_gpus("billing=16,cpu=16,gres/gpu=4,mem=480G,node=1") == 4
    assert tres_gpus("billing=16,cpu=16,gres/gpu:a100=4,gres/gpu=4,mem=480G") == 4
    assert tres_gpus("cpu=2,gres/gpu:tiny=2,mem=1G") == 2
    assert tres_gpus("cpu=2,mem=1G,node=1") is None and tres_gpus("") is None


def fake_sacct(tmp_path: Path, rows: list[str]) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "sacct.out").write_text("\n".join(rows) + "\n")
    script = bin_dir / "sacct"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'sacct.args'}\ncat {tmp_path / 'sacct.out'}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def test_every_instance_of_a_requeued_job_counts_and_the_figure_stays(home, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "output").mkdir(parents=True)
    rec = RunRecord(run_id="r1", name="r1", cluster="devcluster", scheduler="slurm", run_dir=str(run_dir),
                    output_dir=str(run_dir / "output"), created=1.0, nodes=2, gpus_per_node=4, processes_per_node=4,
                    time_seconds=7200, segments=[Segment(job_id="77", started_by="submit", submitted=1.0,
                                                         state="running")], state="running")
    rec.save()
    reg = Registry()
    reg.upsert(rec)
    reg.close()
    # two instances of job 77: the first ran 3600 s on 8 GPUs and was requeued; the second ran 1800 s and ended
    env = fake_sacct(tmp_path, ["77|REQUEUED|3600|gpu[1-2]|0:0|billing=16,cpu=16,gres/gpu=8,mem=96G,node=2",
                                "77|COMPLETED|1800|gpu[3-4]|0:0|billing=16,cpu=16,gres/gpu=8,mem=96G,node=2"])
    row = json.loads(cli("status", "r1", "--json", env=env, check=True).stdout)[0]
    assert row["state"] == "completed" and row["gpu_hours"] == (3600 + 1800) * 8 / 3600
    assert "--duplicates" in (tmp_path / "sacct.args").read_text().split()
    assert RunRecord.load(run_dir).segments[0].gpu_seconds == (3600 + 1800) * 8
    # the run has ended: later status calls ask sacct nothing and still show the figure
    (tmp_path / "sacct.out").write_text("")
    row = json.loads(cli("status", "--json", env=env, check=True).stdout)[0]
    assert row["gpu_hours"] == 12.0


def test_an_old_registry_gains_the_column(home):
    path = Path(os.environ["HPC_FINETUNE_HOME"]) / "registry.sqlite"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, cluster TEXT, scheduler TEXT, "
               "created REAL, nodes INTEGER, gpus_per_node INTEGER, time_seconds INTEGER, job_id TEXT, state TEXT, "
               "reason TEXT, elapsed INTEGER, segments INTEGER, requeues INTEGER, progress TEXT)")
    db.execute("INSERT INTO runs VALUES ('old', '/w/old', 'c', 'slurm', 1.0, 1, 4, 60, '5', 'completed', '', 60, 1, "
               "0, NULL)")
    db.commit()
    db.close()
    rows = json.loads(cli("status", "--json", check=True).stdout)
    assert rows[0]["run_id"] == "old" and "gpu_hours" in rows[0] and rows[0]["gpu_hours"] is None
