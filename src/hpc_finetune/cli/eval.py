"""``hpc-finetune eval RUN``: eval loss/perplexity and side-by-side generations of the base and the tuned model,
here (in this process) or with ``--submit`` as a one-process job of its own on the run's cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_finetune.evalsettings import FLAGS, add_generation_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, run directory, or the output folder of `hpc-finetune train` (with --config)")
    p.add_argument("--config", type=Path, help="run config (default: RUN_DIR/run.yaml)")
    p.add_argument("--model", type=Path, help="adapter or full/merged model folder (default: OUTPUT/final, else the "
                                              "latest complete checkpoint)")
    p.add_argument("--out", type=Path, help="results folder (default: RUN_DIR/eval)")
    add_generation_arguments(p)
    p.add_argument("--submit", action="store_true", help="run it as a job (1 node, 1 GPU if the run had GPUs) on the "
                                                         "run's cluster, recorded as run RUN-eval")
    p.add_argument("--cluster", help="with --submit: cluster profile (default: the run's)")
    p.add_argument("--time", help="with --submit: time limit (default: the run's)")
    p.add_argument("--wait", action="store_true", help="with --submit: wait until the eval job ends")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.errors import UserError
    from hpc_finetune.evalsettings import settings
    from hpc_finetune.records import Registry
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.runfiles import locate

    registry = Registry()
    files = locate(args.run, registry)
    config = args.config or files.config_path
    if not config.is_file():
        raise UserError(f"{config} does not exist; pass the run config with --config", source="eval")
    cfg = load_run_config(config, [])
    gen = settings(args)  # flag errors before the 5 s training import or a job
    out = (args.out or files.run_dir / "eval").resolve()
    if args.submit:
        model = args.model or files.output_dir / "final"  # the job evaluates what exists when it runs
        from hpc_finetune.runs import submit_eval_run

        rec = submit_eval_run(files, config, model.resolve(), out, passed_flags(args), cluster=args.cluster,
                              time=args.time, registry=registry)
        print(f"submitted eval of {files.name} as run {rec.run_id}, job {rec.job_id}; results in {out}")
        print(f"  follow it: hpc-finetune status {rec.run_id}   |   hpc-finetune logs -f {rec.run_id}")
        if args.wait:
            from hpc_finetune.cli.views import wait_and_print

            return wait_and_print(registry, rec)
        return 0
    model = args.model or files.output_dir / "final"
    if args.model is None and not model.is_dir():
        from hpc_finetune.job.checkpoints import last_complete

        model = last_complete(files.output_dir)
        if model is None:
            raise UserError(f"{files.name} has no final model and no complete checkpoint yet in {files.output_dir}",
                            source="eval")
        print(f"no final model yet: evaluating the latest checkpoint, {model}")
    if not Path(model).is_dir():
        raise UserError(f"{model} does not exist", source="eval")
    from hpc_finetune.train.evaluate import evaluate

    evaluate(cfg, Path(model), out, data_file=args.data, prompts_file=args.prompts, gen=gen,
             batch_size=args.batch_size)
    return 0


def passed_flags(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in FLAGS:  # passed through, as given, to the program an eval job runs
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value not in (None, False):
            out += [flag, str(Path(value).resolve()) if name in ("data", "prompts") else str(value)]
    return out
