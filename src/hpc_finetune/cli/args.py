"""Argument definitions shared by commands (argparse only: building the parser must stay cheap)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_finetune.overrides import add_set_argument


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="run config (YAML)")
    p.add_argument("--cluster", "-c", help="cluster profile name or file (default: $HPC_FINETUNE_CLUSTER or local)")
    p.add_argument("--nodes", "-N", type=int, help="nodes")
    p.add_argument("--gpus", "-G", type=int, help="GPUs per node (0: CPU only)")
    p.add_argument("--time", "-t", help="time limit, e.g. 04:00:00 or 1-00:00:00")
    p.add_argument("--partition", "-p", help="partition")
    add_set_argument(p)


def run_request(args: argparse.Namespace):
    """The run service's request from the arguments add_run_arguments defined."""
    from hpc_finetune.runs import RunRequest

    return RunRequest(config=args.config, sets=args.set, cluster=args.cluster, nodes=getattr(args, "nodes", None),
                      gpus=getattr(args, "gpus", None), time=getattr(args, "time", None),
                      partition=getattr(args, "partition", None))


def add_stage_arguments(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """--prepare / --then / --follow and the stage jobs' resources (campaigns/chain.py); `submit` and `sweep`."""
    from hpc_finetune.campaigns.stages import THEN

    g = p.add_argument_group("chained stages (each its own job, queued now, started when the one before completed)")
    g.add_argument("--prepare", action="store_true",
                   help="first a CPU-only job that tokenizes and packs the data into the shared cache, so the "
                        "training job finds it ready")
    g.add_argument("--then", metavar="STAGES",
                   help=f"stages after training, comma-separated, from: {', '.join(THEN)} (e.g. merge,eval: eval "
                        "then evaluates the merged model)")
    if sweep:
        g.add_argument("--follow", choices=("best", "every"), default="best",
                       help="--then follows the best member (a select job picks it once every member has ended: "
                            "eval loss when all have one, else final train loss) or every member")
    g.add_argument("--stage-partition", metavar="P", help="partition of the CPU-only stage jobs (default: the "
                                                          "profile's stages.partition, else its partition)")
    g.add_argument("--stage-time", metavar="T", help="time limit of each stage job (default: the profile's "
                                                     "stages.time, else default_time)")
    g.add_argument("--stage-mem", metavar="M", help="memory of a CPU-only stage job, e.g. 64G (default: the "
                                                    "profile's stages.mem, else mem_per_node_cpu_only)")
    g.add_argument("--stage-cpus", metavar="N", type=int, help="CPU cores of a CPU-only stage job")


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """A sweep's grid (`sweep`, and `render` of a sweep's array script)."""
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values; members are every combination (repeatable; not resources.* "
                        "or launch.*: the members of one job array share one resource request)")
    p.add_argument("--seeds", type=int, metavar="N", help="N members per grid point, training.seed = the config's "
                                                          "seed, +1, ...")
    p.add_argument("--max-parallel", type=int, metavar="K", help="at most K members running at once (--array=...%%K)")
    p.add_argument("--name", help="campaign name (default: the run config's name); members are NAME-<values>")
