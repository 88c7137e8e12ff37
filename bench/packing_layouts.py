"""What each packing layout costs per training step, in one process, interleaved (so the machine's load hits all
three alike): the same packed rows of the demo data as

- ours (bfd): rows of whole samples, 2-D (micro-batch x longest row), position ids restarting per sample, no
  attention_mask: a block-diagonal mask per row (train/packing.py);
- TRL's default packing (bfd, padding-free): the micro-batch flattened into one row, one block-diagonal mask over it;
- one causal mask over each row (what wrapped packing gives: samples see each other).

    .venv/bin/python bench/packing_layouts.py DEMO_DIR --max-length 64 [--steps 20] [--label NAME]

Prints one markdown table row: median ms per optimizer step of each, and their ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", type=Path)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--label", default=None, help="first column (default: the demo folder's name)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpcft-layouts-"))
    os.environ.setdefault("HPCFT_TOKENIZED_CACHE", str(work / "cache"))
    os.environ["WANDB_MODE"] = "disabled"

    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.train.core import build_trainer

    cfg = load_run_config(args.demo / "run.yaml", ["logging.wandb=disabled", f"output_dir={work / 'out'}",
                                                   "data.eval_file=null", f"training.max_length={args.max_length}"])
    trainer, _info = build_trainer(cfg, work / "out")
    pad = trainer.processing_class.pad_token_id
    flat = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)
    one_mask = DataCollatorForLanguageModeling(pad_token_id=pad)
    trainer.model.train()
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    ds, rows_per_step = trainer.train_dataset, cfg.training.per_device_train_batch_size
    times: dict[str, list[float]] = {"ours": [], "trl": [], "causal": []}
    for i in range(args.steps + 3):
        rows = [ds[(i * rows_per_step + j) % len(ds)] for j in range(rows_per_step)]
        plain = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
        for name, batch in (("ours", trainer.data_collator(rows)), ("trl", flat(rows)), ("causal", one_mask(plain))):
            t0 = time.perf_counter()
            trainer.training_step(trainer.model, dict(batch))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            if i >= 3:  # the first steps warm up
                times[name].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"| {args.label or args.demo.name} | {args.max_length} | {ms['ours']:,.0f} | {ms['trl']:,.0f} | "
          f"{ms['causal']:,.0f} | {ms['trl'] / ms['ours']:.2f} | {ms['causal'] / ms['ours']:.2f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
