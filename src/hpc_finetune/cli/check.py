"""``hpc-finetune check RUN.yaml``: every problem at once, each with its fix, before anything queues."""

from __future__ import annotations

import argparse

from hpc_finetune.cli.args import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.common import prepare
    from hpc_finetune.records import Registry
    from hpc_finetune.check import raise_problems

    prep = prepare(args, Registry())
    raise_problems(prep.cfg, prep.profile, prep.spec, config_source=str(args.config))
    print(f"{args.config}: ok for cluster {prep.profile.name} ({prep.spec.nodes} node(s) x "
          f"{prep.spec.gpus_per_node} GPU(s), {prep.spec.time})")
    return 0
