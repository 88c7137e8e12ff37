"""``hpc-finetune merge RUN``: merge the run's LoRA adapter into its base model; save a standalone model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, run directory, or an adapter folder")
    p.add_argument("--out", type=Path, help="where to save (default: OUTPUT/merged)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.records import Registry, load_record

    path = Path(args.run)
    if (path / "adapter_config.json").is_file():
        adapter = path
    else:
        rec = load_record(Registry(), args.run)
        adapter = Path(rec.output_dir) / "final"
    from hpc_finetune.train.merge import merge

    out = merge(adapter, args.out or adapter.parent / "merged", args.dtype)
    print(f"merged model saved in {out}")
    return 0
