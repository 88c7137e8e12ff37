"""Several processes on one machine train ONE model, for every strategy and both launchers.

Each run goes through the real path (`hpc-finetune submit --wait` on the local profile: job script, submitit's
local controller, our node program, accelerate or torchrun, gloo on CPU). Every rank prints a hash of its trainable
parameters at the end (tests/rank_hash.py, added through `training.callbacks`): identical hashes on every rank mean
the gradients were all-reduced; before the fix each rank trained its own copy (parallel_mode=not_parallel).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import cli
from rank_hash import rank_hashes

pytestmark = pytest.mark.train

HERE = Path(__file__).resolve().parent
CASES = {
    # DDP through accelerate, with reentrant gradient checkpointing: needs find_unused_parameters off for LoRA
    "ddp-accelerate-reentrant": ["launch.strategy=ddp", "training.gradient_checkpointing=true",
                                 "training.use_reentrant=true"],
    "ddp-torchrun": ["launch.strategy=ddp", "launch.launcher=torchrun"],
    "zero2": ["launch.strategy=deepspeed", "launch.zero_stage=2"],
    "zero3-offload": ["launch.strategy=deepspeed", "launch.zero_stage=3", "launch.offload_optimizer=true",
                      "launch.offload_params=true"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_train_one_model(home, demo_dir, case):
    sets = CASES[case] + ["launch.processes_per_node=2", "resources.gpus_per_node=0", "logging.wandb=disabled",
                          "training.max_steps=8", "training.save_steps=100", "training.logging_steps=2",
                          "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=2",
                          f"training.callbacks=['{HERE / 'rank_hash.py'}:RankHash']"]
    args = [a for kv in sets for a in ("--set", kv)]
    proc = cli("submit", "--wait", *args, str(demo_dir / "run.yaml"), timeout=900)
    run = re.search(r"submitted run (\S+) as job", proc.stdout).group(1)
    log = cli("logs", run).stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-4000:]
    starts = re.findall(r"hpc-finetune train: host=\S+ rank=(\d) world_size=2 parallel_mode=(\w+) "
                        r"distributed_type=(\w+)", log)
    assert sorted(r for r, _, _ in starts) == ["0", "1"], log[-4000:]
    assert {m for _, m, _ in starts} == {"distributed"}, starts  # the Trainer is in distributed mode on every rank
    hashes = rank_hashes(log)
    assert sorted(hashes) == [0, 1], log[-4000:]
    assert hashes[0] == hashes[1], f"ranks hold different models: {hashes}"
    row = json.loads(cli("status", run, "--json").stdout)[0]
    out = Path(row["run_dir"]) / "output"
    assert (out / "steps.log").read_text().split() == [str(i) for i in range(1, 9)]
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
