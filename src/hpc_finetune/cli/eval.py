"""``hpc-finetune eval RUN``: eval loss/perplexity and side-by-side generations of the base and the tuned model,
here (in this process) or with ``--submit`` as a one-process job of its own on the run's cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from hpc_finetune.evalsettings import add_generation_arguments

# flags passed through, as given, to the program an eval job runs
PASSED = ("data", "prompts", "max_new_tokens", "sample", "temperature", "top_p", "seed", "batch_size")


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
        from hpc_finetune.checkpoints import last_complete

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
    for name in PASSED:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value not in (None, False):
            out += [flag, str(Path(value).resolve()) if name in ("data", "prompts") else str(value)]
    return out


def submit(files, config: Path, model: Path, out: Path, flags: list[str], *, cluster: Optional[str],
           time: Optional[str], registry):
    """Render and submit the eval job as a run of its own; returns its record (already in the index)."""
    import shutil

    from hpc_finetune.cli.common import config_yaml, profile_yaml
    from hpc_finetune.errors import UserError
    from hpc_finetune.evaljob import EvalProgram
    from hpc_finetune.jobspec import gpus_asked, resolve, runs_root
    from hpc_finetune.profile import find_profile
    from hpc_finetune.records import RunRecord, Segment, new_run_id, now, write_atomic
    from hpc_finetune.render import job_python, job_script
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.scheduler import get_scheduler

    name = cluster or (files.record.cluster if files.record else None)
    if not name:
        raise UserError(f"{files.run_dir} is not a submitted run: name the cluster with --cluster", source="eval")
    profile = find_profile(name)
    cfg = load_run_config(config, [])
    res = cfg.resources
    res.nodes, res.gpus_per_node = 1, (1 if gpus_asked(profile, cfg) > 0 else 0)
    res.time = time or res.time
    cfg.launch.processes_per_node = 1
    root = runs_root(profile)
    run_id = new_run_id(registry, root, f"{files.name}-eval")
    run_dir = root / run_id
    cfg.name, cfg.output_dir = run_id, str(out)
    spec = resolve(profile, cfg, run_dir, source=str(config))
    script = job_script(profile, spec)
    program = EvalProgram(argv=[str(run_dir / "run.yaml"), "--model", str(model), "--out", str(out), *flags],
                          python=job_python(profile))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir()
    try:
        write_atomic(run_dir / "run.yaml", config_yaml(cfg))
        write_atomic(run_dir / "profile.yaml", profile_yaml(profile))
        write_atomic(run_dir / "job.sh", script)
        rec = RunRecord(run_id=run_id, name=run_id, cluster=profile.name, scheduler=profile.scheduler,
                        run_dir=str(run_dir), output_dir=str(out), created=now(), nodes=1,
                        gpus_per_node=spec.gpus_per_node, processes_per_node=1, time_seconds=spec.time_seconds)
        rec.save()
        job_id = get_scheduler(profile.scheduler).submit(run_dir, script, program, time_seconds=spec.time_seconds,
                                                         max_requeues=0)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written: the directory was ours alone
        raise
    rec.segments.append(Segment(job_id=job_id, started_by="submit", submitted=now()))
    rec.save()
    registry.upsert(rec)
    return rec
