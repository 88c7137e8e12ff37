"""``hpc-finetune eval RUN``: eval loss/perplexity and side-by-side generations of the base and the tuned model."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_finetune.evalsettings import add_generation_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, run directory, or the output folder of `hpc-finetune train` (with --config)")
    p.add_argument("--config", type=Path, help="run config (default: RUN_DIR/run.yaml)")
    p.add_argument("--model", type=Path, help="adapter or full/merged model folder (default: OUTPUT/final, else the "
                                              "latest complete checkpoint)")
    p.add_argument("--out", type=Path, help="results folder (default: RUN_DIR/eval)")
    add_generation_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.checkpoints import last_complete
    from hpc_finetune.errors import UserError
    from hpc_finetune.evalsettings import settings
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.runfiles import locate

    files = locate(args.run)
    config = args.config or files.config_path
    if not config.is_file():
        raise UserError(f"{config} does not exist; pass the run config with --config", source="eval")
    cfg = load_run_config(config, [])
    model = args.model or files.output_dir / "final"
    if args.model is None and not model.is_dir():
        model = last_complete(files.output_dir)
        if model is None:
            raise UserError(f"{files.name} has no final model and no complete checkpoint yet in {files.output_dir}",
                            source="eval")
        print(f"no final model yet: evaluating the latest checkpoint, {model}")
    if not Path(model).is_dir():
        raise UserError(f"{model} does not exist", source="eval")
    gen = settings(args)  # flag errors before the 5 s training import
    from hpc_finetune.train.evaluate import evaluate

    evaluate(cfg, Path(model), args.out or files.run_dir / "eval", data_file=args.data, prompts_file=args.prompts,
             gen=gen, batch_size=args.batch_size)
    return 0
