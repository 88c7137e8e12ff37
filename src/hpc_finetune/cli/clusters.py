"""``hpc-finetune clusters``: list profiles and validate each (or one file)."""

from __future__ import annotations

import argparse

from hpc_finetune.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", nargs="?", help="validate and show one profile (name or file)")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.profile import available_profiles, find_profile, load_profile_file

    if args.profile:
        prof = find_profile(args.profile)
        print(f"{prof.name}: valid ({prof.path})")
        print(f"  scheduler={prof.scheduler} partition={prof.partition} max_nodes={prof.max_nodes} "
              f"gpus_per_node={prof.gpus_per_node} max_time={prof.max_time} offline={prof.offline}")
        return 0
    bad = 0
    for name, path in sorted(available_profiles().items()):
        try:
            prof = load_profile_file(path)
            print(f"{name:<16} ok     {prof.scheduler:<6} {prof.description}  ({path})")
        except UserError as exc:
            bad += 1
            print(f"{name:<16} ERROR  {exc}")
    return 2 if bad else 0
