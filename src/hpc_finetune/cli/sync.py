"""``hpc-finetune sync RUN|--all``: upload the offline wandb data of a run (every job segment) with `wandb sync`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="run id or run directory")
    p.add_argument("--all", action="store_true", help="every recorded run")
    p.add_argument("--dry-run", action="store_true", help="list the folders that would be synced; upload nothing")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.errors import UserError
    from hpc_finetune.records import Registry
    from hpc_finetune.runfiles import locate
    from hpc_finetune.wandbsync import INSTALL, check_can_upload, sync_run, wandb_command

    if bool(args.run) == bool(args.all):
        raise UserError("give a run id (or run directory), or --all", source="sync")
    registry = Registry()
    runs = [locate(args.run, registry)] if args.run else []
    for row in registry.rows() if args.all else []:
        try:
            runs.append(locate(row["run_dir"], registry))
        except UserError as exc:  # a run directory deleted since: the others still sync
            print(f"{row['run_id']}: skipped: {exc}")
    wandb = wandb_command()
    if not args.dry_run:
        check_can_upload(wandb)
    elif wandb is None:
        print(f"(wandb is not installed on this node; `sync` will need it: {INSTALL})")
    failed = 0
    for files in runs:
        _, bad = sync_run(files, dry_run=args.dry_run, wandb=wandb)
        failed += bad
    return 1 if failed else 0
