"""``hpc-finetune merge RUN``: merge the run's LoRA adapter into its base model; save a standalone model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, run directory, or an adapter folder")
    p.add_argument("--out", type=Path, help="where to save (default: OUTPUT/merged)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="dtype to merge and save in (auto: the base model's own, from its config.json)")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.errors import UserError
    from hpc_finetune.mergeplan import base_dtype, check_memory
    from hpc_finetune.records import Registry, load_record

    path = Path(args.run)
    if (path / "adapter_config.json").is_file():
        adapter = path
    else:
        rec = load_record(Registry(), args.run)
        adapter = Path(rec.output_dir) / "final"
    try:
        base = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
    except (OSError, ValueError, KeyError):
        raise UserError(f"{adapter} has no readable adapter_config.json (full fine-tuning runs need no merge)",
                        source="merge") from None
    dtype = base_dtype(base) if args.dtype == "auto" else args.dtype
    check_memory(base, dtype)  # before the 10 s import and a load that would not fit
    from hpc_finetune.train.merge import merge

    out = merge(adapter, args.out or adapter.parent / "merged", dtype)
    print(f"merged model ({dtype}) saved in {out}")
    return 0
