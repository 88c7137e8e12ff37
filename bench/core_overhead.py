"""Training-core overhead and restart cost, on this CPU.

    .venv/bin/python bench/core_overhead.py [--repeats 3] [--steps tiny=400,small=60] [--restart-examples 100000]
                                            [--out FILE]
    (the model sizes run are those named in --steps; e.g. --steps tiny=60 for a reduced run)

1. Overhead: tokens/s of `hpc-finetune train` against bench/bare_trl.py (TRL's SFTTrainer alone) with the same
   model, data, LoRA and SFTConfig values, for the demo model at two sizes, packing on and off. Packing on: ours
   with the default bfd layout (samples kept apart) and with the opt-in wrapped one, against TRL's default packing
   (bfd, padding-free); packing off: ours against TRL unpacked. Runs rotate (ours, bare, ...; with packing on,
   bfd / wrapped / bare in a rotating order) and the medians are compared; the ratio of each run of ours to the bare
   run of its round is shown too, for the spread. tokens/s is the steady rate: tokens TRL counted (real tokens,
   padding excluded, in every layout) between the logging step at WARM_STEPS and the last one, over the wall time
   between them (each script records both at every logging step), so the trainer's set-up inside train() and the
   first slow steps do not dilute short runs. The time from process start
   to the end of the first optimizer step is reported apart.
2. Restart cost: time from process start to the first optimizer step, cold (tokenized cache empty) against
   resumed (cache and a checkpoint present), on a generated dataset of N examples; next to it the import floor,
   the time a process takes to import the training libraries and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
HERE = Path(__file__).resolve().parent


def run(cmd: list[str], env: dict) -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return t0


WARM_STEPS = 20


def steady_tokens_per_s(log: list[dict]) -> float | None:
    """Tokens/s between the first logging step at or after WARM_STEPS and the last logging step (None for a run
    too short to have both, such as the restart runs)."""
    log = [e for e in log if e.get("num_tokens") is not None]
    first = next((e for e in log if e["step"] >= WARM_STEPS), None)
    if first is None or log[-1]["step"] <= first["step"]:
        return None
    last = log[-1]
    return (last["num_tokens"] - first["num_tokens"]) / (last["time"] - first["time"])


def ours(demo: Path, out: Path, steps: int, packing: str, env: dict, extra: tuple = ()) -> dict:
    """packing: 'bfd', 'wrapped' or 'off'."""
    shutil.rmtree(out, ignore_errors=True)
    layout = ("--set", f"training.packing_strategy={packing}") if packing != "off" else ()
    t0 = run([PY, "-m", "hpc_finetune", "train", str(demo / "run.yaml"), "--set", f"training.max_steps={steps}",
              "--set", "training.save_steps=1000000", "--set", "logging.wandb=disabled", "--set",
              f"training.packing={'false' if packing == 'off' else 'true'}", *layout, "--set", "data.eval_file=null",
              "--set", f"output_dir={out}", *extra], env)
    s = json.loads((out / "summary.json").read_text())
    log = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    return {"tok_s": steady_tokens_per_s(log), "first_step": s["first_step_at"] - t0,
            "pad": s.get("pad_fraction"), "steps": s["step"]}


def bare(demo: Path, out: Path, steps: int, packing: int, env: dict) -> dict:
    t0 = run([PY, str(HERE / "bare_trl.py"), str(demo / "model"), str(demo / "text.jsonl"), str(out),
              "--max-steps", str(steps), "--packing", str(packing)], env)
    s = json.loads(out.read_text())
    return {"tok_s": steady_tokens_per_s(s["log"]), "first_step": s["first_step_at"] - t0, "pad": None,
            "steps": s["steps"]}


def overhead(work: Path, env: dict, repeats: int, steps: dict[str, int]) -> list[str]:
    lines = ["| model | packing: ours / bare TRL | ours tokens/s | bare TRL tokens/s | ours / bare | each pair | "
             "pad fraction (ours) | first step from start: ours / bare (s) |", "|---|---|---:|---:|---:|---|---:|---:|"]
    label = {"bfd": "bfd / bfd", "wrapped": "wrapped (opt-in) / bfd", "off": "off / off"}
    for size in steps:
        demo = work / f"demo-{size}"
        if not demo.exists():
            subprocess.run([PY, "-m", "hpc_finetune", "demo", str(demo), "--size", size, "--samples", "2000"],
                           env=env, check=True, capture_output=True)
        for mine in (("bfd", "wrapped"), ("off",)):
            a: dict[str, list] = {m: [] for m in mine}
            b = []
            for r in range(repeats):  # rotate who runs first
                order = [*mine, "bare"]
                for who in order[r % len(order):] + order[:r % len(order)]:
                    if who == "bare":
                        b.append(bare(demo, work / "b.json", steps[size], int(mine[0] != "off"), env))
                    else:
                        a[who].append(ours(demo, work / "o", steps[size], who, env))
            mb = statistics.median(x["tok_s"] for x in b)
            fb = statistics.median(x["first_step"] for x in b)
            for m in mine:
                ma = statistics.median(x["tok_s"] for x in a[m])
                fa = statistics.median(x["first_step"] for x in a[m][1:] or a[m])  # tokenized cache warm after run 1
                pad = a[m][0]["pad"]
                pairs = " ".join(f"{x['tok_s'] / y['tok_s']:.2f}" for x, y in zip(a[m], b))
                lines.append(f"| {size} | {label[m]} | {ma:,.0f} | {mb:,.0f} | {ma / mb:.2f} | {pairs} | "
                             f"{'-' if pad is None else f'{pad:.4f}'} | {fa:.1f} / {fb:.1f} |")
                print(lines[-1], flush=True)
    return lines


def layouts(work: Path, env: dict, sizes) -> list[str]:
    """bench/packing_layouts.py on each demo model: per-step cost of our bfd rows against TRL's flattened row and
    one causal mask per row, interleaved in one process."""
    lines = ["| model | max_length | ours (bfd, 2-D rows) ms/step | TRL bfd padding-free ms/step | one causal mask per "
             "row ms/step | TRL / ours | causal / ours |", "|---|---:|---:|---:|---:|---:|---:|"]
    for size in sizes:
        for max_length in ((64, 256) if size == "small" else (64,)):
            proc = subprocess.run([PY, str(HERE / "packing_layouts.py"), str(work / f"demo-{size}"), "--max-length",
                                   str(max_length), "--label", size], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"packing_layouts failed:\n{proc.stderr[-3000:]}")
            lines.append(proc.stdout.strip().splitlines()[-1])
            print(lines[-1], flush=True)
    return lines


def restart(work: Path, env: dict, examples: int, repeats: int) -> list[str]:
    demo = work / "demo-restart"
    if not demo.exists():
        subprocess.run([PY, "-m", "hpc_finetune", "demo", str(demo), "--size", "tiny", "--samples", "5000"],
                       env=env, check=True, capture_output=True)
    # SFT-sized examples (each ~8 of the demo's sentences, a few hundred tokens), not the demo's one-liners
    import random

    rng = random.Random(0)
    lines = [json.loads(x)["content"] for x in (demo / "text.jsonl").read_text().splitlines()]
    data = work / "restart.jsonl"
    with data.open("w") as f:
        for _ in range(examples):
            f.write(json.dumps({"content": " ".join(rng.choice(lines) for _ in range(8))}) + "\n")
    out = work / "restart-out"
    cache = work / "restart-cache"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    e = dict(env, HPCFT_TOKENIZED_CACHE=str(cache))
    common = ("--set", "training.save_steps=20", "--set", "training.max_length=256", "--set",
              f"data.train_file={data}")
    cold = ours(demo, out, 20, "bfd", e, common)  # tokenizes 100k examples, trains to step 20, saves checkpoint-20
    resumed, floor = [], []
    for _ in range(repeats):
        # the requeued job: same output directory, cache present, resumes from checkpoint-20, runs one more step
        shutil.rmtree(out / "checkpoint-21", ignore_errors=True)
        t0 = run([PY, "-m", "hpc_finetune", "train", str(demo / "run.yaml"), "--set", "training.max_steps=21",
                  "--set", "logging.wandb=disabled", "--set", "data.eval_file=null", "--set", f"output_dir={out}",
                  *common], e)
        s = json.loads((out / "summary.json").read_text())
        assert s["resumed_from"] and s["resumed_from"].endswith("checkpoint-20"), s
        resumed.append(s["first_step_at"] - t0)
        # the floor under any start: a process importing what the trainer needs, and nothing else
        t0 = run([PY, "-c", "import torch, transformers, datasets, peft; from trl import SFTTrainer"], e)
        floor.append(time.time() - t0)
    r, f = statistics.median(resumed), statistics.median(floor)
    return ["| dataset | cold: start to first step (s) | resumed: start to first step (s) | cold / resumed | "
            "import floor (s) | resumed less floor (s) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {examples:,} examples of ~8 sentences (tiny model, bfd packing, max_length 256) | "
            f"{cold['first_step']:.1f} | {r:.1f} | {cold['first_step'] / r:.1f}x | {f:.1f} | {r - f:.1f} |",
            "",
            f"Resumed: median of {repeats} runs; import floor: median of {repeats} runs of `python -c \"import torch, "
            "transformers, datasets, peft; from trl import SFTTrainer\"` alternating with them."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", default="tiny=400,small=60",
                    help="optimizer steps per run for each model size (about 8 s of steady training each here)")
    ap.add_argument("--restart-examples", type=int, default=100_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    steps = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
    assert all(n > WARM_STEPS + 10 for n in steps.values()), f"need more than {WARM_STEPS + 10} steps per run"
    work = Path(tempfile.mkdtemp(prefix="hpcft-core-bench-"))
    env = dict(os.environ, HPCFT_TOKENIZED_CACHE=str(work / "cache"), WANDB_MODE="disabled",
               HPC_FINETUNE_HOME=str(work / "home"), TOKENIZERS_PARALLELISM="false")
    head = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, CPU only; "
            f"optimizer steps per run: {', '.join(f'{k} {v}' for k, v in steps.items())}; tokens/s measured from "
            f"step {WARM_STEPS} to the last; median of {args.repeats} alternating runs; "
            f"{time.strftime('%Y-%m-%d')}")
    print(head, flush=True)
    over = overhead(work, env, args.repeats, steps)
    lay = layouts(work, env, steps)
    rest = restart(work, env, args.restart_examples, args.repeats)
    print("\n".join(rest))
    text = "\n".join(["", "## Training-core overhead (`bench/core_overhead.py`)", "", head, "", *over, "",
                      "Packing layouts, one optimizer step each, interleaved in one process "
                      "(`bench/packing_layouts.py`; median of 20 steps):", "", *lay, "",
                      "## Restart cost", "", *rest, ""])
    if args.out:
        with args.out.open("a") as f:
            f.write(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
