"""``hpc-finetune plan RUN.yaml``: per-GPU peak memory from the model's config.json, before anything queues."""

from __future__ import annotations

import argparse
import json

from hpc_finetune.cli.args import add_run_arguments, run_request


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--methods", help="compare methods, e.g. full,lora,qlora (default: the config's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from hpc_finetune.errors import UserError
    from hpc_finetune.plan import estimate, inputs_from_run, render_table, smallest_fix
    from hpc_finetune.runs import prepare_run

    prep = prepare_run(run_request(args))
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else [prep.cfg.method]
    for m in methods:
        if m not in ("full", "lora", "qlora", "lora-8bit"):
            raise UserError(f"unknown method {m!r}; one of full, lora, qlora, lora-8bit", field="--methods")
    plans = [estimate(inputs_from_run(dataclasses.replace(prep.cfg, method=m), prep.spec, prep.profile))
             for m in methods]
    if args.json:
        out = []
        for p in plans:
            d = p.as_dict()
            d["smallest_fix"] = smallest_fix(p.inputs) if p.fits() is False else None
            out.append(d)
        print(json.dumps(out if args.methods else out[0], indent=1))
    else:
        print(f"{args.config} on cluster {prep.profile.name}: {prep.spec.nodes} node(s) x "
              f"{prep.spec.gpus_per_node} GPU(s); estimate from {prep.cfg.model.path}/config.json\n")
        print("\n\n".join(render_table(p) for p in plans))
    return 0
