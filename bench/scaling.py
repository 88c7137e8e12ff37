"""Tokens/s of one node against two on the dev cluster (CPU processes, gloo): informational only.

    .venv/bin/python bench/scaling.py [--steps 200] [--out FILE]      (root: starts and stops its own dev cluster)

Both dev-cluster nodes are network namespaces of this one machine, so two "nodes" share its cores: the figure shows
that the multi-node path runs and what its communication costs, not how a real cluster scales.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict) -> str:
    return subprocess.run([PY, "-m", "hpc_finetune", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hpcft-scaling-"))
    state = work / "cluster"
    up = subprocess.run(["bash", str(REPO / "hpc/devcluster/up.sh"), "--nodes", "2", "--state", str(state)],
                        capture_output=True, text=True)
    if up.returncode != 0:
        print(f"scaling: dev cluster did not start (root needed, or one already runs):\n{up.stderr[-1500:]}")
        return 1
    env = dict(os.environ, SLURM_CONF=str(state / "etc/slurm.conf"), HPCFT_DEVCLUSTER_SHARED=str(work / "shared"),
               HPC_FINETUNE_HOME=str(work / "home"), HPCFT_TOKENIZED_CACHE=str(work / "shared" / "tokcache"),
               WANDB_MODE="disabled")
    rows = []
    try:
        demo = work / "shared" / "demo"
        cli("demo", str(demo), "--size", "small", "--samples", "2000", env=env)
        # the first run warms the shared tokenized cache, so the measured runs train, not tokenize
        for nodes in (1, 1, 2):
            out = cli("submit", "--cluster", "devcluster", "--nodes", str(nodes), "--gpus", "0", "--wait", "--set",
                      f"training.max_steps={args.steps}", "--set", "training.save_steps=1000000", "--set",
                      "logging.wandb=disabled", "--set", "data.eval_file=null", str(demo / "run.yaml"), env=env)
            run = re.search(r"submitted run (\S+) as job", out).group(1)
            row = json.loads(cli("status", run, "--json", env=env))[0]
            summary = json.loads((Path(row["run_dir"]) / "output" / "summary.json").read_text())
            rows.append((nodes, summary["world_size"], summary["num_tokens"] / summary["train_seconds"],
                         summary["train_seconds"]))
        check_times = []
        for _ in range(5):  # `check` with live partition limits (scontrol + sinfo) against the running cluster
            t0 = time.perf_counter()
            cli("check", "--cluster", "devcluster", "--nodes", "2", "--gpus", "4", str(demo / "run.yaml"), env=env)
            check_times.append(time.perf_counter() - t0)
    finally:
        subprocess.run(["bash", str(REPO / "hpc/devcluster/down.sh"), "--state", str(state)], capture_output=True)
    last = {n: r for n, *r in rows}  # the runs after the warm-up
    one = last[1][1]
    lines = [f"Dev cluster on {platform.machine()}, {os.cpu_count()} cores (both nodes share them), small demo model, "
             f"{args.steps} steps, 1 process per node, gloo; {time.strftime('%Y-%m-%d')}", "",
             "| nodes | world size | tokens/s | train s | vs 1 node |", "|---:|---:|---:|---:|---:|"]
    for n in (1, 2):
        world, tok_s, secs = last[n]
        lines.append(f"| {n} | {world} | {tok_s:,.0f} | {secs:.1f} | {tok_s / one:.2f} |")
    lines += ["", f"`hpc-finetune check --cluster devcluster --nodes 2 --gpus 4` (model, data and live partition "
                  f"limits): median {sorted(check_times)[2]:.2f} s of 5."]
    print("\n".join(lines))
    if args.out:
        with args.out.open("a") as f:
            f.write("\n## One node vs two on the dev cluster (`bench/scaling.py`, informational)\n\n"
                    + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
