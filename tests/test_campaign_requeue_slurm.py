"""`requeue CAMPAIGN` and `cancel CAMPAIGN` of a sweep with stages on the real dev cluster (Slurm 22.05): the new
array of the failed members waits on no prepare job and the select/merge after the members run again after it;
`cancel` takes the select job first, so it never starts between the array's end and its own cancel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from conftest import cli, wait_for

pytestmark = pytest.mark.slurm

TESTS = Path(__file__).resolve().parent
FAIL_ONCE = f"{TESTS / 'failing_step.py'}:FailOnce"  # fails at step 2 once per output folder
PACED = f"{TESTS / 'paced_steps.py'}:PacedSteps"
ENDED = ("completed", "failed", "cancelled", "timeout")


@pytest.fixture
def demo(home, demo_dir, tmp_path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_dir, target)
    return target


def sacct(job_ids: list[str]) -> dict[str, dict]:
    out = subprocess.run(["sacct", "-X", "-P", "-n", "-o", "JobID,State,Start,End", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, start, end = line.split("|")
        rows[jid] = {"state": state, "start": start, "end": end}
    return rows


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def campaign_rows(name: str) -> dict[str, dict]:
    return {d["run_id"]: d for d in json.loads(cli("status", name, "--json", check=True).stdout)}


def record(row: dict) -> dict:
    return json.loads((Path(row["run_dir"]) / "record.json").read_text())


def test_requeue_of_a_sweep_rewires_select_and_merge_to_the_new_array(home, devcluster, demo):
    # member 0 (1 step, logged: select ranks on it) never reaches step 2 and completes; member 1 fails once at step 2
    out = cli("sweep", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--name", "rq",
              "--grid", "training.max_steps=1,4", "--prepare", "--then", "merge", "--follow", "best",
              "--set", "logging.wandb=disabled", "--set", "training.logging_steps=1",
              "--set", f"training.callbacks=['{FAIL_ONCE}']", check=True).stdout
    first_array = re.search(r"job array (\d+)", out).group(1)
    rows = campaign_rows("rq")
    kinds = {d["kind"]: name for name, d in rows.items() if d["kind"] != "train"}
    select, merge, prepare = kinds["select"], kinds["merge"], kinds["prepare"]
    m0, m1 = sorted((n for n, d in rows.items() if d["kind"] == "train"), key=lambda n: rows[n]["member"])

    def first_pass():
        rows = campaign_rows("rq")
        return rows if rows[m1]["state"] == "failed" and (rows[merge]["state"] in ENDED or
                                                          rows[merge]["state"].startswith("skipped")) else None

    rows = wait_for("the first pass (member 1 failed, select and merge ran)", first_pass, timeout=600, every=2)
    assert rows[m0]["state"] == rows[select]["state"] == rows[merge]["state"] == "completed", rows
    assert "#SBATCH --dependency=afterok:" in (Path(rows[m0]["run_dir"]).parent / "rq" / "array.sh").read_text()
    first_select_job = rows[select]["job_id"]

    out = cli("requeue", "rq", check=True).stdout
    print(out)  # the evidence `pytest -rP` shows
    new_array = re.search(r"1 member\(s\) again as job array (\d+)", out).group(1)
    assert new_array != first_array and f"{m1} ({new_array}_1)" in out, out
    assert f"stage {select} (select): new job" in out and f"waits on afterany:{new_array}" in out, out
    # the new array waits on nothing: not on the long-ended prepare job (its script says what was submitted)
    script = (Path(rows[m0]["run_dir"]).parent / "rq" / "array-requeue-1.sh").read_text()
    assert "--dependency" not in script and "--kill-on-invalid-dep" not in script and "#SBATCH --array" in script
    shown = subprocess.run(["scontrol", "show", "job", new_array], capture_output=True, text=True).stdout
    assert "Dependency=(null)" in shown or shown == "", shown  # "" once slurmctld forgot an ended job

    def second_pass():
        rows = campaign_rows("rq")
        return rows if all(d["state"] in ENDED for d in rows.values()) and \
            rows[select]["job_id"] != first_select_job else None

    rows = wait_for("the requeued member, select and merge to end", second_pass, timeout=600, every=2)
    assert {n: d["state"] for n, d in rows.items()} == dict.fromkeys(rows, "completed"), rows
    assert rows[prepare]["job_id"] and record(rows[prepare])["requeues"] == 0  # prepare did not run again
    # waits on nothing, and says so: a member still listing a failed prepare job in `after` shows as "skipped"
    assert record(rows[m1])["dependency"] == "" and record(rows[m1])["after"] == []
    task, sel, mrg = f"{new_array}_1", rows[select]["job_id"], rows[merge]["job_id"]
    acct = sacct([task, sel, mrg])
    print(acct)
    assert [acct[j]["state"] for j in (task, sel, mrg)] == ["COMPLETED"] * 3, acct
    assert when(acct[sel]["start"]) >= when(acct[task]["end"])  # select chose again once the new array ended
    assert when(acct[mrg]["start"]) >= when(acct[sel]["end"])
    assert record(rows[merge])["dependency"] == f"afterok:{sel}"
    assert record(rows[select])["dependency"] == f"afterany:{new_array}"


def test_cancel_of_a_sweep_takes_the_select_job_before_the_array(home, devcluster, demo):
    out = cli("sweep", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--name", "cx",
              "--grid", "training.learning_rate=1e-3,3e-3", "--then", "merge", "--follow", "best",
              "--set", "logging.wandb=disabled", "--set", "training.max_steps=400",
              "--set", f"training.callbacks=['{PACED}']", check=True).stdout
    array = re.search(r"job array (\d+)", out).group(1)
    rows = campaign_rows("cx")
    select = next(n for n, d in rows.items() if d["kind"] == "select")
    merge = next(n for n, d in rows.items() if d["kind"] == "merge")
    wait_for("a member to run", lambda: any(d["state"] == "running" for d in campaign_rows("cx").values()),
             timeout=300, every=1)
    out = cli("cancel", "cx", check=True).stdout
    ids = re.search(r"job\(s\) (.*)$", out.strip()).group(1).split(", ")
    assert ids == [rows[merge]["job_id"], rows[select]["job_id"], array], out  # the tail first, the array last
    acct = sacct([rows[select]["job_id"], rows[merge]["job_id"]])
    print(out, acct)
    assert all(a["state"].startswith("CANCELLED") for a in acct.values()), acct  # "CANCELLED by 0"
    assert {a["start"] for a in acct.values()} <= {"None", "Unknown"}, acct  # neither ever started
