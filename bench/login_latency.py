"""Login-node latency: wall time of CLI commands against `python -c pass` and `python -c "import trl"`.

    .venv/bin/python bench/login_latency.py [--repeats 5] [--out bench/RESULTS.md] [--baseline OLD/src]

With ``--baseline``, the login commands also run from another source tree (e.g. a `git worktree` of the previous
release: ``git worktree add /tmp/base v0.x && ... --baseline /tmp/base/src``) in the same alternating rounds, and a
second table gives this tree / baseline: a refactor shows no regression there, measured, not claimed.

Each figure is the median of N runs, the commands alternating round-robin so that machine noise hits all alike,
and is reported as a ratio against the baselines measured in the same run. `status` reads synthetic run records
(1k, 10k, 50k, written by this script into a temporary HPC_FINETUNE_HOME); ended runs need no scheduler call.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def synthetic_registry(home: Path, n: int) -> None:
    from hpc_finetune.records import IndexRow, Registry

    reg = Registry(home / "registry.sqlite")  # where `status` finds it with HPC_FINETUNE_HOME=home
    rows = [IndexRow(run_id=f"run-{i}", run_dir=f"/work/u/runs/run-{i}", cluster="devcluster", scheduler="slurm",
                     created=1.7e9 + i, nodes=1 + i % 2, gpus_per_node=4, time_seconds=3600, job_id=str(1000 + i),
                     state="completed" if i % 3 else "timeout", reason="", elapsed=3000, segments=1, requeues=0,
                     progress='{"step": 100, "max_steps": 100, "final_loss": 1.23}', gpu_hours=3.3)
            for i in range(n)]
    reg.insert_many(rows)
    reg.close()


def live_runs(home: Path, work: Path, n: int) -> Path:
    """``n`` live Slurm runs (run directories with records) and a recorded `sacct` on PATH that answers for them
    and counts its calls. Returns the bin folder to put first on PATH."""
    from hpc_finetune.records import Registry, RunRecord, Segment

    reg = Registry(home / "registry.sqlite")
    lines = []
    for i in range(n):
        rd = work / "live" / f"live-{i}"
        rd.mkdir(parents=True, exist_ok=True)
        rec = RunRecord(run_id=f"live-{i}", name="live", cluster="devcluster", scheduler="slurm", run_dir=str(rd),
                        output_dir=str(rd / "output"), created=1.8e9 + i, nodes=2, gpus_per_node=4,
                        processes_per_node=4, time_seconds=86400, state="running",
                        segments=[Segment(job_id=str(500000 + i), started_by="submit", submitted=1.8e9)])
        rec.save()
        reg.upsert(rec)
        lines.append(f"{500000 + i}|RUNNING|{3600 + i}|gpu[{i % 90 + 1:03d}-{i % 90 + 2:03d}]|0:0|"
                     "billing=16,cpu=16,gres/gpu=8,mem=960G,node=2")
    reg.close()
    bin_dir = work / "recorded-bin"
    bin_dir.mkdir(exist_ok=True)
    (work / "sacct.out").write_text("\n".join(lines) + "\n")
    script = bin_dir / "sacct"
    script.write_text(f"#!/bin/sh\necho call >> {work / 'sacct.calls'}\ncat {work / 'sacct.out'}\n")
    script.chmod(0o755)
    return bin_dir


def live_campaign(home: Path, work: Path, members: int = 50, running: int = 10) -> Path:
    """A sweep of ``members`` live array tasks (``running`` of them running, the rest pending as one ``A_[...]``
    row, as sacct shows an array) with its campaign.json, and a recorded `sacct` that answers for them and counts
    its calls. Returns the bin folder to put first on PATH."""
    from hpc_finetune.campaigns.store import Campaign, CampaignMember
    from hpc_finetune.records import Registry, RunRecord, Segment

    reg = Registry(home / "registry.sqlite")
    array = 700000
    root = work / "camp-runs"
    campaign_dir = root / "lr-sweep"
    campaign_dir.mkdir(parents=True, exist_ok=True)
    camp = Campaign(campaign_id="lr-sweep", name="lr-sweep", kind="sweep", campaign_dir=str(campaign_dir),
                    cluster="devcluster", scheduler="slurm", created=1.8e9, array_job_id=str(array), max_parallel=running)
    lines = []
    for i in range(members):
        rd = root / f"lr-sweep-m{i:02d}"
        rd.mkdir(parents=True, exist_ok=True)
        state = "running" if i < running else "pending"
        rec = RunRecord(run_id=rd.name, name=rd.name, cluster="devcluster", scheduler="slurm", run_dir=str(rd),
                        output_dir=str(rd / "output"), created=1.8e9 + i, nodes=1, gpus_per_node=4,
                        processes_per_node=4, time_seconds=86400, state=state, campaign="lr-sweep", member=i,
                        segments=[Segment(job_id=f"{array}_{i}", started_by="submit", submitted=1.8e9)])
        rec.save()
        reg.upsert(rec, {"step": 10 * i, "max_steps": 1000, "loss": 2.0 - i / 100})
        camp.members.append(CampaignMember(i, rd.name, {"training.learning_rate": f"{i}e-5"}))
        if i < running:
            lines.append(f"{array}_{i}|RUNNING|{3600 + i}|gpu{i:03d}|0:0|billing=8,cpu=8,gres/gpu=4,mem=480G,node=1")
    lines.append(f"{array}_[{running}-{members - 1}%{running}]|PENDING|0|None assigned|0:0|")
    camp.save()
    reg.close()
    bin_dir = work / "campaign-bin"
    bin_dir.mkdir(exist_ok=True)
    (work / "sacct-campaign.out").write_text("\n".join(lines) + "\n")
    script = bin_dir / "sacct"
    script.write_text(f"#!/bin/sh\necho call >> {work / 'sacct-campaign.calls'}\ncat {work / 'sacct-campaign.out'}\n")
    script.chmod(0o755)
    return bin_dir


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--baseline", type=Path, metavar="SRC", help="another tree's src/ to compare the login commands "
                                                                 "against, in the same run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpcft-bench-"))
    cfg = work / "run.yaml"
    cfg.write_text("name: b\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n")
    env = dict(os.environ, HOME=str(work), USER="bench")
    cases: dict[str, tuple[list[str], dict]] = {
        "python -c pass": ([PY, "-c", "pass"], env),
        "python -c 'import trl'": ([PY, "-c", "import trl"], env),
        "python -c 'from trl import SFTTrainer'": ([PY, "-c", "from trl import SFTTrainer"], env),
        "hpc-finetune --help": ([PY, "-m", "hpc_finetune", "--help"], env),
        "hpc-finetune render (a100-example, 2 nodes)": (
            [PY, "-m", "hpc_finetune", "render", "--cluster", "a100-example", "--nodes", "2", str(cfg)],
            dict(env, HPC_FINETUNE_HOME=str(work / "empty"))),
    }
    for n in (1000, 10000, 50000):
        home = work / f"reg{n}"
        synthetic_registry(home, n)
        cases[f"hpc-finetune status ({n:,} runs; shows live + last 50)"] = (
            [PY, "-m", "hpc_finetune", "status"], dict(env, HPC_FINETUNE_HOME=str(home)))
        if n >= 10000:
            cases[f"hpc-finetune status --all ({n:,} runs, every row)"] = (
                [PY, "-m", "hpc_finetune", "status", "--all"], dict(env, HPC_FINETUNE_HOME=str(home)))
    live_home = work / "reg10000-live"
    synthetic_registry(live_home, 10000)
    bin_dir = live_runs(live_home, work, 100)
    live_case = "hpc-finetune status (10,000 runs, 100 live: one recorded sacct)"
    cases[live_case] = ([PY, "-m", "hpc_finetune", "status"],
                        dict(env, HPC_FINETUNE_HOME=str(live_home), PATH=f"{bin_dir}:{env['PATH']}"))
    camp_home = work / "reg10000-campaign"
    synthetic_registry(camp_home, 10000)
    camp_bin = live_campaign(camp_home, work)
    camp_env = dict(env, HPC_FINETUNE_HOME=str(camp_home), PATH=f"{camp_bin}:{env['PATH']}")
    camp_cases = ["hpc-finetune status (10,000 runs + a live 50-member campaign: one recorded sacct)",
                  "hpc-finetune status lr-sweep (the campaign's 50 members)"]
    cases[camp_cases[0]] = ([PY, "-m", "hpc_finetune", "status"], camp_env)
    cases[camp_cases[1]] = ([PY, "-m", "hpc_finetune", "status", "lr-sweep"], camp_env)
    compared = ["hpc-finetune --help", "hpc-finetune render (a100-example, 2 nodes)",
                "hpc-finetune status (1,000 runs; shows live + last 50)",
                "hpc-finetune status (10,000 runs; shows live + last 50)"]  # (live records: today's format only)
    if args.baseline:
        here = str(Path(__file__).resolve().parents[1] / "src")
        for name in compared:
            cmd, e = cases[name]
            cases[name] = (cmd, dict(e, PYTHONPATH=here))
            cases[f"[baseline] {name}"] = (cmd, dict(e, PYTHONPATH=str(args.baseline.resolve())))
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for name, (cmd, e) in cases.items():  # warm-up (page cache, .pyc)
        timed(cmd, e)
    for _ in range(args.repeats):
        for name, (cmd, e) in cases.items():
            samples[name].append(timed(cmd, e))
    med = {k: statistics.median(v) for k, v in samples.items()}
    base, trl = med["python -c pass"], med["python -c 'import trl'"]
    trainer = med["python -c 'from trl import SFTTrainer'"]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"median of {args.repeats} alternating runs; {time.strftime('%Y-%m-%d')}", "",
             "| command | median s | x python -c pass | import trl / this | import SFTTrainer / this |",
             "|---|---:|---:|---:|---:|"]
    for k, v in med.items():
        if not k.startswith("[baseline]"):
            lines.append(f"| {k} | {v:.3f} | {v / base:.2f} | {trl / v:.1f} | {trainer / v:.0f} |")
    if args.baseline:
        lines += ["", f"Against the baseline tree {args.baseline} (same rounds):", "",
                  "| command | baseline s | this tree s | this / baseline |", "|---|---:|---:|---:|"]
        for name in compared:
            old, new = med[f"[baseline] {name}"], med[name]
            lines.append(f"| {name} | {old:.3f} | {new:.3f} | {new / old:.2f} |")
    calls = (work / "sacct.calls").read_text().count("call")
    runs_of_live_case = 1 + args.repeats
    lines += ["", f"Scheduler calls: {calls} `sacct` calls for {runs_of_live_case} `status` runs over 100 live jobs "
                  f"({calls / runs_of_live_case:g} per status)."]
    camp_calls = (work / "sacct-campaign.calls").read_text().count("call")
    camp_runs = 2 * (1 + args.repeats)
    lines += [f"Campaign: {camp_calls} `sacct` calls for {camp_runs} `status`/`status lr-sweep` runs over a live "
              f"50-member array ({camp_calls / camp_runs:g} per status)."]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(args.out.read_text() + "\n" + table + "\n" if args.out.exists() else table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
