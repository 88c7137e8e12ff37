"""The `prepare` stage's job: tokenize and pack a run's data into the shared tokenized cache, on a CPU node.

``python -m hpc_finetune.train.prepare_data RUN_DIR/run.yaml`` runs exactly the training core's data pipeline
(train/data.py: same fingerprint, same cache folder, same files), so the training job that follows finds the cache
as a hit and its GPUs never wait on tokenization. It prints the fingerprint, hit or miss, and the sizes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import load_run_config


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_finetune.train.prepare_data")
    parser.add_argument("config", type=Path, help="the run config (RUN_DIR/run.yaml of the training run)")
    args = parser.parse_args(argv)
    try:
        from hpc_finetune.train.core import set_offline
        from hpc_finetune.train.data import cache_root, prepare
        from hpc_finetune.train.model import load_tokenizer

        cfg = load_run_config(args.config, [])
        set_offline(cfg)
        tokenizer = load_tokenizer(cfg)
        print(f"hpc-finetune prepare: tokenizing {cfg.data.train_file or cfg.data.dataset_name} into {cache_root()}",
              flush=True)
        _train, _eval, info = prepare(cfg, tokenizer)
    except UserError as exc:
        print(f"hpc-finetune prepare: error: {exc}", file=sys.stderr)
        return 2
    print(f"hpc-finetune prepare: tokenized cache {info['cache']}: {info['cache_dir']} (fingerprint "
          f"{info['fingerprint']}; {info['train_rows']} train rows, {info['eval_rows']} eval rows, "
          f"{info['train_tokens']} tokens)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
