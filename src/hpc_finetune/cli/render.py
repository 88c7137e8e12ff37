"""``hpc-finetune render RUN.yaml``: the job script `submit` would send, byte for byte (no side effects)."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_run_arguments, run_request


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--all", action="store_true", help="also print the launcher config files (accelerate, "
                                                      "DeepSpeed) that submit writes to the run directory")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.render import launch_files
    from hpc_finetune.runs import prepare_run

    prep = prepare_run(run_request(args))
    sys.stdout.write(prep.script)
    if args.all:
        for name, text in launch_files(prep.cfg, prep.spec).items():
            sys.stdout.write(f"\n# ===== {prep.spec.run_dir / name}\n{text}")
    return 0
