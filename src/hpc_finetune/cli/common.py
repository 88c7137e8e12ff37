"""What several commands share: turning a run config + profile + flags into a rendered job."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from hpc_finetune.jobspec import JobSpec, resolve, runs_root
from hpc_finetune.job.launch import NodeProgram
from hpc_finetune.profile import ClusterProfile, find_profile
from hpc_finetune.records import Registry, next_run_id
from hpc_finetune.render import job_python, job_script
from hpc_finetune.runconfig import RunConfig, load_run_config
from hpc_finetune.schema import to_dict


@dataclass
class Prepared:
    profile: ClusterProfile
    cfg: RunConfig
    spec: JobSpec
    script: str
    program: NodeProgram


# Command-line flags -> the config key they set: they enter the config like `--set`, so the same checks apply.
FLAGS = {"nodes": "resources.nodes", "gpus": "resources.gpus_per_node", "time": "resources.time",
         "partition": "resources.partition"}


def load_with_flags(args: argparse.Namespace) -> tuple[ClusterProfile, RunConfig]:
    flags = {key: (f"--{flag}", getattr(args, flag, None)) for flag, key in FLAGS.items()}
    cfg = load_run_config(args.config, args.set, flags=flags)
    if args.cluster is not None:
        profile = find_profile(args.cluster)
    else:
        profile = find_profile(os.environ.get("HPC_FINETUNE_CLUSTER") or "local")
    return profile, cfg


def prepare(args: argparse.Namespace, registry: Registry,
            loaded: tuple[ClusterProfile, RunConfig] | None = None, run_dir: Path | None = None) -> Prepared:
    """The rendered job for ``run_dir`` (default: the id a submit would take now, nothing created); ``loaded`` is
    (profile, config) already read by the caller."""
    profile, cfg = loaded or load_with_flags(args)
    if run_dir is None:
        root = runs_root(profile)
        run_dir = root / next_run_id(registry, root, cfg.name)
    return build(profile, cfg, run_dir, source=str(args.config))


def build(profile: ClusterProfile, cfg: RunConfig, run_dir: Path, *, source: str) -> Prepared:
    spec = resolve(profile, cfg, run_dir, source=source)
    cfg.output_dir = str(spec.output_dir)
    program = NodeProgram(run_dir=str(run_dir), nodes=spec.nodes, processes_per_node=spec.processes_per_node,
                          gpus_per_node=spec.gpus_per_node, strategy=cfg.launch.strategy,
                          launcher=cfg.launch.launcher, python=job_python(profile),
                          output_dir=str(spec.output_dir), time_seconds=spec.time_seconds,
                          signal_seconds=profile.signal_seconds, max_requeues=profile.max_requeues)
    return Prepared(profile, cfg, spec, job_script(profile, spec), program)


def config_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def profile_yaml(profile: ClusterProfile) -> str:
    return yaml.safe_dump(to_dict(profile), sort_keys=False)
