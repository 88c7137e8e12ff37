"""``hpc-finetune eval RUN``: eval loss/perplexity and side-by-side generations of the base and the tuned model,
here (in this process) or with ``--submit`` as a one-process job of its own on the run's cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

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
        rec = submit(files, config, model.resolve(), out, passed_flags(args), cluster=args.cluster, time=args.time,
                     registry=registry)
        print(f"submitted eval of {files.name} as run {rec.run_id}, job {rec.job_id}; results in {out}")
        print(f"  follow it: hpc-finetune status {rec.run_id}   |   hpc-finetune logs -f {rec.run_id}")
        if args.wait:
            from hpc_finetune.cli.submit import wait

            return wait(registry, rec)
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


def submit(files, config: Path, model: Path, out: Path, flags: list[str], *, cluster: Optional[str],
           time: Optional[str], registry):
    """Render and submit the eval job as a run of its own (through the same create_run as `submit`: atomic
    directory claim, nothing left behind on failure); returns its record (already in the index)."""
    import dataclasses
    import re

    from hpc_finetune.cli.common import config_yaml, profile_yaml
    from hpc_finetune.errors import UserError
    from hpc_finetune.evaljob import EvalProgram
    from hpc_finetune.jobspec import gpus_asked, resolve, runs_root
    from hpc_finetune.profile import find_profile
    from hpc_finetune.records import RunRecord, now
    from hpc_finetune.render import job_python, job_script
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.runs import NewRun, create_run

    name = cluster or (files.record.cluster if files.record else None)
    if not name:
        raise UserError(f"{files.run_dir} is not a submitted run: name the cluster with --cluster", source="eval")
    # an eval job is never requeued or retried: it is cheap to submit again, and a requeue would not resume it
    profile = dataclasses.replace(find_profile(name), max_requeues=0, retry_on_failure=0)
    cfg = load_run_config(config, [])
    res = cfg.resources
    res.nodes, res.gpus_per_node = 1, (1 if gpus_asked(profile, cfg) > 0 else 0)
    res.time = time or res.time
    cfg.launch.processes_per_node = 1
    # a valid run name whatever the evaluated folder is called: letters, digits, . _ - and at most 64 characters
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", files.name).strip("-._")[:50] or "run"

    def build(run_dir: Path) -> NewRun:
        cfg.name, cfg.output_dir = run_dir.name, str(out)
        spec = resolve(profile, cfg, run_dir, source=str(config))
        script = job_script(profile, spec)
        program = EvalProgram(argv=[str(run_dir / "run.yaml"), "--model", str(model), "--out", str(out), *flags],
                              python=job_python(profile))
        rec = RunRecord(run_id=run_dir.name, name=run_dir.name, cluster=profile.name, scheduler=profile.scheduler,
                        run_dir=str(run_dir), output_dir=str(out), created=now(), nodes=1,
                        gpus_per_node=spec.gpus_per_node, processes_per_node=1, time_seconds=spec.time_seconds,
                        kind="eval")
        return NewRun(record=rec, script=script, program=program, max_requeues=0,
                      files={"run.yaml": config_yaml(cfg), "profile.yaml": profile_yaml(profile), "job.sh": script})

    return create_run(registry, runs_root(profile), f"{base}-eval", build)
