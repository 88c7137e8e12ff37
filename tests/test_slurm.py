"""The real dev cluster (Debian's Slurm 22.05, two slurmd hosts in network namespaces, fake GPUs).

Every command runs in a fresh process, as a user in a new shell long after `submit` exited.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import cli, log_text, profile_with, status_of, submit, wait_state
from rank_hash import rank_hashes
from hpc_finetune.runs import prepare_at
from hpc_finetune.profile import find_profile
from hpc_finetune.runconfig import load_run_config

pytestmark = pytest.mark.slurm


def test_one_node_two_gpus_cancel_and_requeue(home, devcluster, demo_dir):
    run = submit("--nodes", "1", "--gpus", "2", "--set", "logging.wandb=disabled", str(demo_dir / "run.yaml"))
    seen = {status_of(run)["state"]}
    row = wait_state(run, {"completed", "failed"})
    assert row["state"] == "completed", log_text(run)
    assert seen <= {"pending", "running", "completed"}
    assert row["progress"]["step"] == 30 and row["progress"]["final_loss"] is not None
    log = log_text(run)
    assert "CUDA_VISIBLE_DEVICES=0,1" in log  # two fake GPUs from Slurm's gres
    assert "world_size=2" in log  # one process per GPU
    acct = subprocess.run(["sacct", "-X", "--duplicates", "-j", row["job_id"], "-P", "-n", "-o", "ElapsedRaw,AllocTRES"],
                          capture_output=True, text=True, check=True).stdout.split()
    expected = sum(int(e) * int(re.search(r"gres/gpu=(\d+)", t).group(1)) for e, t in (a.split("|") for a in acct))
    assert row["gpu_hours"] == round(expected / 3600, 4) and expected > 0  # sacct's elapsed x GPUs
    run_dir = Path(json.loads(cli("status", run, "--json").stdout)[0]["run_dir"])
    script = (run_dir / "job.sh").read_text()
    assert 'export TRITON_CACHE_DIR="${TMPDIR:-/tmp}/triton-cache"' in script

    # a second run: cancel it while it runs, then requeue it into the same run directory
    run2 = submit("--nodes", "1", "--gpus", "0", "--set", "logging.wandb=disabled", "--set",
                  "training.max_steps=5000", str(demo_dir / "run.yaml"))
    wait_state(run2, {"running"})
    first_job = status_of(run2)["job_id"]
    assert cli("cancel", run2).returncode == 0
    assert wait_state(run2, {"cancelled"}, timeout=120)["state"] == "cancelled"
    out = cli("requeue", run2, check=True).stdout
    assert "new job" in out
    row = status_of(run2)
    assert row["job_id"] != first_job and row["segments"] == 2 and row["requeues"] == 1
    record = json.loads((Path(row["run_dir"]) / "record.json").read_text())
    assert [s["job_id"] for s in record["segments"]] == [first_job, row["job_id"]]
    assert record["segments"][0]["state"] == "cancelled"
    wait_state(run2, {"running", "pending"})
    cli("cancel", run2, check=True)


TWO_NODE_STRATEGIES = {
    "ddp": ["launch.strategy=ddp"],
    "ddp-torchrun": ["launch.strategy=ddp", "launch.launcher=torchrun"],
    "zero2": ["launch.strategy=deepspeed", "launch.zero_stage=2"],
    "zero3-offload": ["launch.strategy=deepspeed", "launch.zero_stage=3", "launch.offload_optimizer=true",
                      "launch.offload_params=true"],
}


RANK_HASH = Path(__file__).resolve().parent / "rank_hash.py"


def cli_sacct(job: str) -> dict[str, int]:
    """JobID -> AllocCPUS of a job and its steps, as Slurm's accounting recorded them."""
    out = subprocess.run(["sacct", "-j", job, "-P", "-n", "-o", "JobID,AllocCPUS"], capture_output=True, text=True,
                         check=True).stdout
    return {jid: int(cpus) for jid, cpus in (line.split("|") for line in out.splitlines() if "|" in line)}


def adapter_generates(final: Path, base: Path) -> list[int]:
    """Load the trained adapter on its base model (as a user would after the run) and generate a few tokens."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(final)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), final).eval()
    ids = tok("the cluster", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("strategy", sorted(TWO_NODE_STRATEGIES))
def test_two_nodes_two_processes_each(home, devcluster, demo_dir, strategy):
    sets = [a for kv in TWO_NODE_STRATEGIES[strategy] + ["launch.processes_per_node=2", "logging.wandb=disabled",
                                                         f"training.callbacks=['{RANK_HASH}:RankHash']"]
            for a in ("--set", kv)]
    run = submit("--nodes", "2", "--gpus", "0", *sets, str(demo_dir / "run.yaml"))
    row = wait_state(run, {"completed", "failed"}, timeout=500)
    logs = log_text(run, 0) + log_text(run, 1)
    assert row["state"] == "completed", logs[-5000:]
    starts = re.findall(r"hpc-finetune train: host=(\S+) rank=(\d) world_size=4 parallel_mode=(\w+)", logs)
    hosts_by_rank = {int(r): h for h, r, _ in starts}
    assert sorted(hosts_by_rank) == [0, 1, 2, 3] and set(hosts_by_rank.values()) == {"node1", "node2"}
    assert {mode for _, _, mode in starts} == {"distributed"}  # every rank's Trainer in distributed mode
    hashes = rank_hashes(logs)  # ONE model: the trainable parameters are identical on all four ranks at the end
    assert sorted(hashes) == [0, 1, 2, 3] and len(set(hashes.values())) == 1, hashes
    if strategy == "ddp":  # the training step got the CPUs the job asked for (srun --cpus-per-task, Slurm 22.05+)
        job = row["job_id"]
        acct = cli_sacct(job)
        assert acct[f"{job}.0"] == acct[job] == 2 * find_profile("devcluster").cpus_per_node_cpu_only, acct
    nodes = re.findall(r"hpc-finetune node: host=(\S+) node_rank=(\d)/2 main=(\S+)", logs)
    assert {(h, r) for h, r, _ in nodes} == {("node1", "0"), ("node2", "1")}  # distinct machine ranks
    assert len({m for _, _, m in nodes}) == 1  # one main address and port for all
    out = Path(row["run_dir"]) / "output"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    # only the main process writes progress: every step once, one summary
    assert (out / "steps.log").read_text().split() == [str(i) for i in range(1, 31)]
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress] == [5, 10, 15, 20, 25, 30]
    assert progress[-1]["loss"] < progress[0]["loss"]  # it learns
    assert json.loads((out / "summary.json").read_text())["world_size"] == 4
    assert len(adapter_generates(out / "final", demo_dir / "model")) == 5


def test_two_jobs_on_the_same_nodes_do_not_collide(home, devcluster, demo_dir):
    runs = [submit("--nodes", "2", "--gpus", "0", "--set", "launch.processes_per_node=1", "--set",
                   "logging.wandb=disabled", "--set", "training.max_steps=10", "--set",
                   "resources.time=00:10:00", str(demo_dir / "run.yaml")) for _ in range(2)]
    rows = [wait_state(r, {"completed", "failed"}, timeout=400) for r in runs]
    assert [r["state"] for r in rows] == ["completed", "completed"], [log_text(r) for r in runs]
    ports = {re.search(r"main=\S+:(\d+)", log_text(r)).group(1) for r in runs}
    assert len(ports) == 2


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed", "fsdp"])
def test_two_by_four_scripts_pass_sbatch_test_only(home, devcluster, tmp_path, strategy):
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(f"name: t\nmodel: {{path: /m}}\ndata: {{train_file: /d.jsonl}}\n"
                        f"launch: {{strategy: {strategy}}}\nresources: {{nodes: 2, gpus_per_node: 4}}\n")
    prep = prepare_at(find_profile("devcluster"), load_run_config(cfg_path), tmp_path / "rundir", source="x")
    script = tmp_path / "job.sh"
    script.write_text(prep.script)
    proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr


def test_status_makes_one_scheduler_call_for_many_runs(home, devcluster, demo_dir, monkeypatch):
    from hpc_finetune.runs import status_rows
    from hpc_finetune.records import Registry, RunRecord, Segment
    from hpc_finetune.scheduler.slurm import SlurmScheduler

    registry = Registry()
    for i in range(25):
        rd = home / "runs" / f"r{i}"
        rd.mkdir(parents=True)
        rec = RunRecord(run_id=f"r{i}", name="r", cluster="devcluster", scheduler="slurm", run_dir=str(rd),
                        output_dir=str(rd / "out"), created=i, nodes=1, gpus_per_node=0, processes_per_node=1,
                        time_seconds=60, segments=[Segment(job_id=str(900000 + i), started_by="submit",
                                                           submitted=0)])
        rec.save()
        registry.upsert(rec)
    calls = []
    original = SlurmScheduler.query
    monkeypatch.setattr(SlurmScheduler, "query", lambda self, ids, dirs: calls.append(ids) or original(self, ids,
                                                                                                        dirs))
    rows = status_rows(registry, None)
    assert len(rows) == 25 and len(calls) == 1 and len(calls[0]) == 25



def test_check_reads_the_live_partition(home, devcluster, demo_dir, tmp_path, monkeypatch):
    ok = cli("check", "--cluster", "devcluster", "--nodes", "2", "--gpus", "4", str(demo_dir / "run.yaml"),
             check=True).stdout
    assert "live partition debug: up, max 2 nodes, max time 2:00:00, 4 GPU(s)/node (tiny)" in ok

    # five planted mistakes, one line each; submit refuses to queue it
    planted = tmp_path / "planted.yaml"
    planted.write_text(f"name: planted\nmodel: {{path: {demo_dir / 'modle'}}}\n"
                       f"data: {{train_file: {demo_dir / 'text.jsonl'}, text_field: body, "
                       f"eval_file: {demo_dir / 'eval.jsonl'}}}\n"
                       "resources: {partition: gpu-big, time: '03:00:00'}\n")
    proc = cli("check", "--cluster", "devcluster", str(planted))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 5 and "Traceback" not in proc.stderr, proc.stderr
    for needle in ("model folder", "no 'body' column", "eval.jsonl", "longer than", "partition 'gpu-big' does not "
                   "exist on this cluster; partitions: debug"):
        assert needle in proc.stderr, needle
    assert cli("submit", "--cluster", "devcluster", str(planted)).returncode == 2
    assert "no runs yet" in cli("status").stdout

    # a profile that promises more than the site gives: the live limits catch what the profile would let through
    loose = profile_with(tmp_path, monkeypatch, "loose", "max_nodes: 16\ngpus_per_node: 8\nmax_time: '10:00:00'\n")
    proc = cli("check", "--cluster", loose, "--nodes", "3", "--gpus", "8", "--time", "04:00:00",
               str(demo_dir / "run.yaml"))
    assert proc.returncode == 2, proc.stdout
    for needle in ("3 nodes asked, but partition 'debug' allows at most 2",
                   "time 4:00:00 is over the limit of partition 'debug' (2:00:00)",
                   "8 GPUs per node asked, but nodes of partition 'debug' have at most 4"):
        assert needle in proc.stderr, proc.stderr
