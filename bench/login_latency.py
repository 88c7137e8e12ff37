"""Login-node latency: wall time of CLI commands against `python -c pass` and `python -c "import trl"`.

    .venv/bin/python bench/login_latency.py [--repeats 5] [--out bench/RESULTS.md]

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


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
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
        lines.append(f"| {k} | {v:.3f} | {v / base:.2f} | {trl / v:.1f} | {trainer / v:.0f} |")
    calls = (work / "sacct.calls").read_text().count("call")
    runs_of_live_case = 1 + args.repeats
    lines += ["", f"Scheduler calls: {calls} `sacct` calls for {runs_of_live_case} `status` runs over 100 live jobs "
                  f"({calls / runs_of_live_case:g} per status)."]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(args.out.read_text() + "\n" + table + "\n" if args.out.exists() else table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
