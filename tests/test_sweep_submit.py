"""`sweep` without a cluster: the array script (member chosen at run time, every value quoted, the member's program
in place before the task needs it), submission through a recorded `sbatch` (pickles exist before sbatch runs;
a refused array or a bad member leaves nothing), and `status`'s campaign row from one recorded `sacct` call that
answers with rows captured on the dev cluster."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import cli
from hpc_finetune.campaigns.arrayscript import ArrayMember, array_script
from hpc_finetune.runs import prepare_at
from hpc_finetune.profile import load_profile_file
from hpc_finetune.runconfig import load_run_config

DATA = Path(__file__).resolve().parent / "data" / "sacct"
RUN = "name: lr\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\nlogging: {wandb: disabled}\n"


def fake_bin(tmp_path: Path, name: str, body: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text("#!/bin/bash\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def test_array_script_picks_the_member_at_run_time_and_runs_no_hostile_value(tmp_path):
    marker = tmp_path / "pwned"
    site = tmp_path / "site.yaml"
    root = tmp_path / "sh ared$(touch {m})'q".replace("{m}", str(marker))
    site.write_text("scheduler: slurm\npartition: 'x; touch {m}'\nextra_env:\n  EVIL: '$(touch {m})'\n"
                    "storage: {{shared_root: \"{root}\", node_local: /tmp}}\n".format(m=marker, root=root))
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(RUN)
    profile = load_profile_file(site)
    runs = [root / "runs" / f"lr-m{i}" for i in range(3)]
    prep = prepare_at(profile, load_run_config(cfg_path), runs[0], source="run.yaml")
    script = array_script(profile, prep.spec, "lr", root / "runs" / "lr",
                          [ArrayMember(i, str(d), str(d / "output")) for i, d in enumerate(runs)], 2)
    assert "#SBATCH --array=0-2%2" in script
    assert f"#SBATCH --partition='x; touch {marker}'" in script
    for d in runs:
        (d / "jobs").mkdir(parents=True)
        (d / "jobs" / "member_submitted.pkl").write_text(f"program of {d.name}")
    (runs[2] / "jobs" / "6_2_submitted.pkl").write_text("checkpointed program")  # a requeued task's own
    setup = script.split("# --- launch")[0] + "printenv HPCFT_RUN_DIR WANDB_DIR EVIL\n"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SLURM_ARRAY_JOB_ID": "6"}
    for i, d in enumerate(runs):
        out = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, cwd=tmp_path,
                             env={**env, "SLURM_ARRAY_TASK_ID": str(i)})
        assert out.returncode == 0, out.stderr
        log = (d / "jobs" / f"6_{i}_0_log.out").read_text()  # the task's output went to its member's log at once
        assert f"{d}\n{d}\n$(touch {marker})\n" in log
        expected = "checkpointed program" if i == 2 else f"program of {d.name}"
        assert (d / "jobs" / f"6_{i}_submitted.pkl").read_text() == expected
    assert not marker.exists(), "a value ran as shell code"
    out = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, cwd=tmp_path,
                         env={**env, "SLURM_ARRAY_TASK_ID": "7"})
    assert out.returncode == 2 and "array task 7 is not a member of campaign lr" in out.stderr


@pytest.fixture
def sweep_world(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HPCFT_DEVCLUSTER_SHARED", str(tmp_path / "shared"))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"sample {i}"}) + "\n" for i in range(20)))
    model = tmp_path / "m"
    model.mkdir()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: lr\nmodel: {{path: {model}}}\ndata: {{train_file: {data}}}\n"
                   "logging: {wandb: disabled}\n")
    return cfg


SWEEP = ["sweep", "--cluster", "devcluster", "--nodes", "1", "--gpus", "1", "--no-check"]


def test_sweep_pickles_every_member_before_sbatch_and_records_array_tasks(sweep_world, tmp_path):
    # the recorded sbatch fails unless every member's program is already in place when the array is submitted
    env = fake_bin(tmp_path, "sbatch", f"""echo "$@" >> {tmp_path}/sbatch.args
script="${{@: -1}}"
n=0
for d in $(sed -n 's/^  [0-9]*) HPCFT_RUN_DIR=\\([^;]*\\);.*/\\1/p' "$script"); do
  [ -s "$d/jobs/member_submitted.pkl" ] || {{ echo "sbatch: error: no program in $d" >&2; exit 1; }}
  n=$((n + 1))
done
[ "$n" = 4 ] || {{ echo "sbatch: error: $n members in $script" >&2; exit 1; }}
echo 77
""")
    out = cli(*SWEEP, str(sweep_world), "--grid", "training.learning_rate=1e-4,2e-4", "--seeds", "2",
              "--max-parallel", "3", env=env, check=True).stdout
    assert "submitted campaign lr: 4 member(s) as job array 77" in out
    assert (tmp_path / "sbatch.args").read_text().count("\n") == 1  # ONE sbatch for the four
    rows = json.loads(cli("status", "lr", "--json", env=fake_bin(tmp_path, "sacct", "exit 0\n"),
                          check=True).stdout)
    assert [r["job_id"] for r in rows] == ["77_0", "77_1", "77_2", "77_3"]
    assert [r["run_id"] for r in rows] == ["lr-learning_rate1e-4-seed100", "lr-learning_rate1e-4-seed101",
                                           "lr-learning_rate2e-4-seed100", "lr-learning_rate2e-4-seed101"]
    campaign = json.loads((Path(rows[0]["run_dir"]).parent / "lr" / "campaign.json").read_text())
    assert campaign["array_job_id"] == "77" and campaign["max_parallel"] == 3
    assert [m["values"] for m in campaign["members"]][3] == {"training.learning_rate": "2e-4", "training.seed": "101"}
    record = json.loads((Path(rows[3]["run_dir"]) / "record.json").read_text())
    assert record["campaign"] == "lr" and record["member"] == 3 and record["kind"] == "train"
    assert "#SBATCH --array=0-3%3" in (Path(rows[0]["run_dir"]).parent / "lr" / "array.sh").read_text()
    # each member is a normal run: its own job.sh (a later `requeue` of it as a plain job) and run.yaml
    member = Path(rows[3]["run_dir"])
    assert f'export HPCFT_RUN_DIR="{member}"' in (member / "job.sh").read_text()
    assert "seed: 101" in (member / "run.yaml").read_text()


def test_a_bad_member_or_a_refused_array_leaves_nothing(sweep_world, tmp_path):
    env = fake_bin(tmp_path, "sbatch", f"echo called >> {tmp_path}/sbatch.calls\n"
                                       "echo 'sbatch: error: Batch job submission failed: Invalid account' >&2\n"
                                       "exit 1\n")
    shared = tmp_path / "shared"
    bad = cli(*SWEEP, str(sweep_world), "--grid", "lora.r=8,0,16", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "member 1 (lora.r=0): --grid: lora.r:" in bad.stderr
    typo = cli(*SWEEP, str(sweep_world), "--grid", "training.learnig_rate=1e-4,2e-4", env=env)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1
    assert "member 0 (training.learnig_rate=1e-4): --grid: training.learnig_rate: unknown key" in typo.stderr
    grid_refused = cli(*SWEEP, str(sweep_world), "--grid", "launch.strategy=ddp,fsdp", env=env)
    assert grid_refused.returncode == 2 and "launch.* cannot vary" in grid_refused.stderr
    assert not (tmp_path / "sbatch.calls").exists() and not shared.exists()
    refused = cli(*SWEEP, str(sweep_world), "--grid", "lora.r=8,16", env=env)
    assert refused.returncode == 2 and "Invalid account" in refused.stderr and refused.stderr.count("\n") == 1
    assert (tmp_path / "sbatch.calls").read_text().count("called") == 1
    assert list((shared / "hpc-finetune" / "runs").iterdir()) == []  # campaign folder and members rolled back
    assert cli("status", env=env, check=True).stdout.startswith("no runs yet")


def test_status_folds_a_campaign_into_one_row_from_one_sacct_call(sweep_world, tmp_path):
    env = fake_bin(tmp_path, "sbatch", "echo 1\n")
    cli(*SWEEP, str(sweep_world), "--grid", "lora.r=4,8,16,32", "--max-parallel", "2", env=env, check=True)
    # sacct as the dev cluster answered while tasks 0 and 1 ran and 2-3 waited as one row `1_[2-3%2]`
    # (tests/data/sacct/array_running_pending.txt, columns as status asks for them)
    captured = [ln.split("|") for ln in (DATA / "array_running_pending.txt").read_text().splitlines()
                if ln and not ln.startswith(("#", "JobID"))]
    rows = ["|".join([jid, st, el, nl, ec, tres]) for jid, _raw, st, _s, _e, el, nl, ec, tres in captured]
    (tmp_path / "sacct.out").write_text("\n".join(rows) + "\n")
    env = fake_bin(tmp_path, "sacct", f'echo "$@" >> {tmp_path}/sacct.args\ncat {tmp_path}/sacct.out\n')
    table = cli("status", env=env, check=True).stdout
    assert re.search(r"^lr +campaign running +1 +1x1 .*4 member\(s\): 0 completed, 2 running, 2 pending, 0 failed",
                     table, re.M), table
    assert "lr-r" not in table
    calls = (tmp_path / "sacct.args").read_text().splitlines()
    assert len(calls) == 1 and calls[0].split()[-2:] == ["-j", "1"]  # the array once, not four tasks
    members = json.loads(cli("status", "lr", "--json", env=env, check=True).stdout)
    assert [m["state"] for m in members] == ["running", "running", "pending", "pending"]
    assert [m["member"] for m in members] == [0, 1, 2, 3]
    expanded = cli("status", "lr", env=env, check=True).stdout
    assert expanded.splitlines()[0].startswith("campaign lr (running): 4 member(s): 0 completed, 2 running")
    assert len((tmp_path / "sacct.args").read_text().splitlines()) == 3  # one per status call


def test_submitit_reads_an_array_task_program_under_the_name_the_array_script_gives_it(monkeypatch, tmp_path):
    """The array script copies the member's program to jobs/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}_submitted.pkl:
    that is where the installed submitit's task looks (JobPaths.submitted_pickle with SlurmJobEnvironment.job_id)."""
    from submitit.core.utils import JobPaths
    from submitit.slurm.slurm import SlurmJobEnvironment

    for name, value in {"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "6", "SLURM_ARRAY_TASK_ID": "1",
                        "SLURM_PROCID": "0", "SUBMITIT_EXECUTOR": "slurm", "SUBMITIT_FOLDER": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    env = SlurmJobEnvironment()
    assert env.job_id == "6_1"  # not the raw SLURM_JOB_ID (7)
    assert env.paths.submitted_pickle == tmp_path / "6_1_submitted.pkl"
    assert JobPaths(tmp_path, job_id="6_1").submitted_pickle.name == "6_1_submitted.pkl"
    from hpc_finetune import submitit_api

    assert submitit_api.submitted_pickle_name("6_1") == "6_1_submitted.pkl"
    submitit_api.write_program(print, tmp_path / "p.pkl", timeout_min=3, max_requeues=2)  # as submitit's task loads it
    from submitit.core.utils import DelayedSubmission

    loaded = DelayedSubmission.load(tmp_path / "p.pkl")
    assert loaded.function is print and loaded._timeout_min == 3 and loaded._timeout_countdown == 2
    from hpc_finetune.job.segments import own_job_id

    assert own_job_id() == "6_1" and own_job_id({"SLURM_JOB_ID": "12"}) == "12"


def test_the_array_script_exports_what_a_member_job_script_exports(sweep_world, tmp_path):
    """Each task runs its member like the member's own job.sh would: the same variables (the run directory's taken at
    run time), the same launch; a variable added to job.sh but not to the array script fails here."""
    env = fake_bin(tmp_path, "sbatch", "echo 5\n")
    cli(*SWEEP, str(sweep_world), "--grid", "lora.r=4,8", env=env, check=True)
    runs = Path(os.environ["HPCFT_DEVCLUSTER_SHARED"]) / "hpc-finetune" / "runs"
    array = (runs / "lr" / "array.sh").read_text()
    member = (runs / "lr-r8" / "job.sh").read_text()
    exported = lambda text: {ln.split("=")[0].split()[1]: ln.split("=", 1)[1]  # noqa: E731
                             for ln in text.splitlines() if ln.startswith("export ") and "=" in ln}
    mine, its = exported(array), exported(member)
    assert set(its) - set(mine) == {"HPCFT_RUN_DIR"}  # set by the member's `case` branch, then exported
    assert "export HPCFT_RUN_DIR\n" in array
    for name, value in its.items():
        if name != "HPCFT_RUN_DIR":
            assert mine[name] == value.replace(str(runs / "lr-r8"), "${HPCFT_RUN_DIR}"), name
    header = lambda text: [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]  # noqa: E731
    assert [h for h in header(array) if "--array" not in h and "--output" not in h and "--job-name" not in h] == \
        [h for h in header(member) if "--output" not in h and "--job-name" not in h]


def test_a_stage_hook_adds_array_options_before_the_array_is_queued(sweep_world, tmp_path, monkeypatch):
    """`sweep --prepare` (the stages' side) queues a job first and makes the array wait on it: submit_sweep's
    before_submit hook sees the campaign folder and the member records, and its options reach the array's header."""
    from hpc_finetune.campaigns.sweep import SweepRequest, submit_sweep
    from hpc_finetune.records import Registry

    env = fake_bin(tmp_path, "sbatch", "echo 8\n")
    monkeypatch.setenv("PATH", env["PATH"])
    seen = {}

    def before(campaign_dir, records):
        seen["dir"], seen["members"] = campaign_dir.name, [r.run_id for r in records]
        return [("dependency", "afterok:12"), ("kill-on-invalid-dep", "yes")]

    req = SweepRequest(config=sweep_world, sets=[], grid=["lora.r=4,8"], cluster="devcluster", nodes=1, gpus=1,
                       check=False)
    campaign, records = submit_sweep(req, Registry(), before_submit=before)
    assert seen == {"dir": "lr", "members": ["lr-r4", "lr-r8"]} and campaign.array_job_id == "8"
    header = (Path(campaign.campaign_dir) / "array.sh").read_text()
    assert "#SBATCH --dependency=afterok:12\n#SBATCH --kill-on-invalid-dep=yes\n" in header
