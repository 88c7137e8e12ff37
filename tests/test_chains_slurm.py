"""Chained stages on the real dev cluster (Slurm 22.05): dependencies held by slurmctld, a failed training's tail
cancelled by Slurm (--kill-on-invalid-dep=yes) and shown as skipped, and `requeue` re-wiring the stages."""

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
FAIL_ONCE = f"{TESTS / 'failing_step.py'}:FailOnce"


@pytest.fixture
def demo(home, demo_dir, tmp_path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_dir, target)
    return target


def sacct(job_ids: list[str]) -> dict[str, dict]:
    out = subprocess.run(["sacct", "-X", "-P", "-n", "-o", "JobID,State,Reason,Eligible,Start,End", "-j",
                          ",".join(job_ids)], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, reason, eligible, start, end = line.split("|")
        rows[jid] = {"state": state, "reason": reason, "eligible": eligible, "start": start, "end": end}
    return rows


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def rows_of(*runs: str) -> dict[str, dict]:
    out = {}
    for run in runs:
        out.update({d["run_id"]: d for d in json.loads(cli("status", run, "--json", check=True).stdout)})
    return out


def queued(job_ids: list[str]) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T %r", "-j", ",".join(job_ids)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_prepare_train_merge_eval_run_in_order_on_slurm(home, devcluster, demo):
    proc = cli("submit", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--prepare",
               "--then", "merge,eval", "--set", "training.max_steps=4", "--set", "logging.wandb=disabled", "--wait",
               timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = re.search(r"campaign (\S+): prepare -> train -> merge -> eval on devcluster", proc.stdout).group(1)
    runs = [f"{c}-prepare", f"{c}-train", f"{c}-merge", f"{c}-eval"]
    records = {r: json.loads((Path(rows_of(r)[r]["run_dir"]) / "record.json").read_text()) for r in runs}
    jobs = [records[r]["segments"][-1]["job_id"] for r in runs]
    acct = sacct(jobs)
    assert [acct[j]["state"] for j in jobs] == ["COMPLETED"] * 4, acct
    for i in range(1, 4):  # each job waited on the one before: queued with afterok, eligible and started after it
        assert records[runs[i]]["dependency"] == f"afterok:{jobs[i - 1]}"
        assert records[runs[i]]["after"] == [runs[i - 1]]
        script = (Path(records[runs[i]]["run_dir"]) / "job.sh").read_text()
        assert f"#SBATCH --dependency=afterok:{jobs[i - 1]}\n#SBATCH --kill-on-invalid-dep=yes\n" in script
        before, now = acct[jobs[i - 1]], acct[jobs[i]]
        assert when(now["eligible"]) >= when(before["end"]) and when(now["start"]) >= when(before["end"])
    # the prepare job ran on a CPU-only request and built the cache; training found it
    train_dir = Path(records[runs[1]]["run_dir"])
    assert json.loads((train_dir / "output" / "summary.json").read_text())["tokenized_cache"] == "hit"
    prep_log = cli("logs", runs[0], check=True).stdout
    assert "tokenized cache miss" in prep_log
    # eval evaluated the merged model: it loaded and generated
    merged = train_dir / "output" / "merged"
    assert (merged / "config.json").is_file()
    assert f"--model {merged}" in cli("logs", runs[3], check=True).stdout
    samples = [json.loads(x) for x in (train_dir / "eval" / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["tuned"] for s in samples)
    assert json.loads((train_dir / "eval" / "metrics.json").read_text())["tuned"]["eval_loss"] > 0


def test_failed_training_skips_its_stages_and_requeue_rewires_them(home, devcluster, demo):
    out = cli("submit", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--then", "merge,eval",
              "--set", "training.max_steps=4", "--set", "logging.wandb=disabled", "--set",
              f"training.callbacks=['{FAIL_ONCE}']", check=True).stdout
    c = re.search(r"campaign (\S+): train -> merge -> eval", out).group(1)  # demo, demo-2, ...: the cluster is shared
    train, merge, evl = f"{c}-train", f"{c}-merge", f"{c}-eval"
    jobs = dict(re.findall(r"(\S+)\s+job (\d+)", out))
    assert set(jobs) == {train, merge, evl}, out

    def settled():
        rows = rows_of(train, merge, evl)
        return rows if rows[train]["state"] == "failed" and \
            all(rows[r]["state"].startswith("skipped") for r in (merge, evl)) else None

    rows = wait_for("the training to fail and its stages to show as skipped", settled, timeout=600, every=2)
    assert rows[merge]["state"] == rows[evl]["state"] == "skipped: train failed"
    assert "failed with exit status 1 at step 2" in rows[train]["reason"]  # the trainer raised at step 2
    assert queued(list(jobs.values())) == []  # Slurm cancelled them: nothing pending forever
    acct = sacct([jobs[merge], jobs[evl]])
    assert {a["state"] for a in acct.values()} == {"CANCELLED"} and {a["start"] for a in acct.values()} == {"None"}
    table = cli("status", check=True).stdout  # the chain is one campaign row
    assert re.search(rf"{c}\s+campaign ended .*1 failed; merge\+eval skipped: train failed", table), table
    table = cli("status", c, check=True).stdout  # expanded: a row per job
    assert re.search(rf"{merge}\s+skipped: train failed", table), table

    # requeue of the ended training: a new job, and its (cancelled) stages queued again after it
    out = cli("requeue", train, check=True).stdout
    new_train = re.search(r"new job (\d+)", out).group(1)
    assert f"stage {merge} (merge): new job" in out and f"waits on afterok:{new_train}" in out, out
    wait_for("the re-wired chain to complete",
             lambda: all(d["state"] == "completed" for d in rows_of(train, merge, evl).values()),
             timeout=600, every=2)
    merge_rec = json.loads((Path(rows_of(merge)[merge]["run_dir"]) / "record.json").read_text())
    assert [s["job_id"] for s in merge_rec["segments"]][0] == jobs[merge] and len(merge_rec["segments"]) == 2
    assert merge_rec["dependency"] == f"afterok:{new_train}"
    eval_rec = json.loads((Path(rows_of(evl)[evl]["run_dir"]) / "record.json").read_text())
    assert eval_rec["dependency"] == f"afterok:{merge_rec['segments'][-1]['job_id']}"


def test_a_failed_stage_is_requeued_alone_once_fixed_and_the_next_waits_on_it(home, devcluster, demo):
    prompts = demo / "prompts.jsonl"
    good = prompts.read_text()
    prompts.write_text(good.splitlines()[0] + "\n{not json\n")  # only the eval job reads the whole file
    out = cli("submit", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--then", "eval,report",
              "--set", "training.max_steps=2", "--set", "logging.wandb=disabled", "--wait", timeout=900).stdout
    c = re.search(r"campaign (\S+): train -> eval -> report", out).group(1)
    train, evl, report = f"{c}-train", f"{c}-eval", f"{c}-report"
    rows = rows_of(train, evl, report)
    assert [rows[r]["state"] for r in (train, evl, report)] == ["completed", "failed", "skipped: eval failed"]
    first_report_job = rows[report]["job_id"]
    prompts.write_text(good)
    out = cli("requeue", evl, check=True).stdout
    new_eval = re.search(rf"eval stage {evl}: new job (\d+)", out).group(1)  # waits on nothing: train completed
    assert f"stage {report} (report): new job" in out and f"waits on afterok:{new_eval}" in out, out
    wait_for("the requeued eval and its report", lambda: all(
        d["state"] == "completed" for d in rows_of(evl, report).values()), timeout=600, every=2)
    rec = json.loads((Path(rows_of(report)[report]["run_dir"]) / "record.json").read_text())
    assert rec["segments"][0]["job_id"] == first_report_job and rec["dependency"] == f"afterok:{new_eval}"
    acct = sacct([new_eval, rec["segments"][-1]["job_id"]])
    assert when(acct[rec["segments"][-1]["job_id"]]["start"]) >= when(acct[new_eval]["end"])


def test_sweep_prepares_once_per_tokenized_cache_and_the_array_waits_on_all_of_them(home, devcluster, demo):
    """A grid over training.max_length with --prepare: two prepare jobs (one per tokenized cache), the array queued
    with afterok on both (slurmctld's own view of it), each member's record listing them. Nothing is left queued."""
    out = cli("sweep", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--grid",
              "training.max_length=32,64", "--prepare", "--name", "mlq", "--no-check", "--set",
              "logging.wandb=disabled", "--set", "training.max_steps=2", check=True).stdout
    c = re.search(r"submitted campaign (\S+): 2 member\(s\) as job array (\d+)", out)
    assert c, out
    campaign, array = c.group(1), c.group(2)
    preps = dict(re.findall(rf"prepare\s+({campaign}-prepare-\d)\s+job (\d+)", out))
    assert sorted(preps) == [f"{campaign}-prepare-1", f"{campaign}-prepare-2"], out
    try:
        rows = rows_of(campaign)
        members = [r for r in rows.values() if r.get("member") is not None]
        assert len(members) == 2
        for m in members:
            rec = json.loads((Path(m["run_dir"]) / "record.json").read_text())
            assert rec["after"] == sorted(preps) and rec["dependency"] == \
                "afterok:" + ":".join(preps[p] for p in sorted(preps))
        script = (Path(members[0]["run_dir"]).parent / campaign / "array.sh").read_text()
        assert f"#SBATCH --dependency=afterok:{preps[sorted(preps)[0]]}:{preps[sorted(preps)[1]]}\n" in script
        # each prepare tokenizes from a member's config: one per length
        lengths = {re.search(r"max_length: (\d+)\n", (Path(rows[p]["run_dir"]) / "run.yaml").read_text()).group(1)
                   for p in preps}
        assert lengths == {"32", "64"}
    finally:
        cli("cancel", campaign)
    wait_for("nothing of the campaign queued", lambda: queued([array, *preps.values()]) == [], timeout=60)


def test_a_sweep_whose_stages_cannot_be_queued_cancels_its_array_and_prepare_on_slurm(home, devcluster, demo,
                                                                                     monkeypatch, capsys):
    """The merge job is refused (injected) after the prepare job, the array and the select job were queued: all of
    them are cancelled (the array by its id), every record says why, the CLI says one line."""
    from hpc_finetune.campaigns import chain
    from hpc_finetune.cli.main import main
    from hpc_finetune.errors import UserError
    from hpc_finetune.records import Registry

    real = chain.queue_stage

    def queue_stage(*args, **kwargs):
        if (args[4] if len(args) > 4 else kwargs["stage"]) == "merge":
            raise UserError("injected: the merge job was refused", source="test")
        return real(*args, **kwargs)

    monkeypatch.setattr(chain, "queue_stage", queue_stage)
    rc = main(["sweep", "--cluster", "devcluster", "--gpus", "0", str(demo / "run.yaml"), "--grid",
               "training.learning_rate=1e-3,3e-3", "--prepare", "--then", "merge", "--name", "rbs", "--no-check",
               "--set", "logging.wandb=disabled"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines() == ["hpc-finetune sweep: error: test: injected: the merge job was "
                                                    "refused"], err
    records = [json.loads((Path(r["run_dir"]) / "record.json").read_text())
               for r in Registry().campaign_rows(next(
                   r["campaign"] for r in Registry().rows() if r["campaign"] and r["campaign"].startswith("rbs")))]
    assert sorted(r["kind"] for r in records) == ["prepare", "select", "train", "train"], records
    assert {(r["state"], r["reason"]) for r in records} == {("cancelled", chain.QUEUE_FAILED)}
    jobs = [r["segments"][-1]["job_id"] for r in records]
    array = {j.split("_")[0] for j in jobs if "_" in j}
    assert len(array) == 1  # the members are the array's tasks
    wait_for("nothing of it queued any more", lambda: queued([*array, *(j for j in jobs if "_" not in j)]) == [],
             timeout=60)
