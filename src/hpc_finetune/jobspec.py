"""Resolve a run config + cluster profile (+ command-line flags) into one concrete job request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hpc_finetune import layout, memsize
from hpc_finetune.errors import UserError, UserErrors
from hpc_finetune.job.launchplan import LaunchPlan, plan_launch
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.runconfig import RunConfig
from hpc_finetune.timefmt import parse_time, sbatch_time


@dataclass
class JobSpec:
    run_id: str
    run_dir: Path
    output_dir: Path
    cluster: str
    scheduler: str
    nodes: int
    gpus_per_node: int
    processes_per_node: int
    cpus_per_task: int
    mem: str
    time_seconds: int
    partition: Optional[str]
    sbatch_options: list[tuple[str, Optional[str]]] = field(default_factory=list)
    launch: Optional[LaunchPlan] = None  # how the job starts its trainers (job/launchplan.py)

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node

    @property
    def time(self) -> str:
        return sbatch_time(self.time_seconds)


def gpus_asked(profile: ClusterProfile, cfg: RunConfig) -> int:
    return profile.gpus_per_node if cfg.resources.gpus_per_node is None else cfg.resources.gpus_per_node


def node_request(profile: ClusterProfile, gpus: int) -> tuple[int, str]:
    """CPUs per task and memory per node that a job with ``gpus`` GPUs per node asks for."""
    if gpus:
        return profile.cpus_per_gpu * gpus, memsize.scale(profile.mem_per_gpu, gpus)
    return profile.cpus_per_node_cpu_only, profile.mem_per_node_cpu_only


def runs_root(profile: ClusterProfile) -> Path:
    return profile.shared_root_path() / "hpc-finetune" / "runs"


def resolve(profile: ClusterProfile, cfg: RunConfig, run_dir: Path, *, source: str = "run config") -> JobSpec:
    """Check the request against the profile's limits and fill in the profile's defaults."""
    res = cfg.resources
    problems: list[UserError] = []  # every limit broken, not just the first
    nodes = res.nodes
    if nodes > profile.max_nodes:
        problems.append(UserError(f"{nodes} nodes asked, but cluster {profile.name!r} allows at most "
                                  f"{profile.max_nodes}", source=source, field="resources.nodes (--nodes)"))
    gpus = gpus_asked(profile, cfg)
    if gpus > profile.gpus_per_node:
        problems.append(UserError(f"{gpus} GPUs per node asked, but nodes of cluster {profile.name!r} have "
                                  f"{profile.gpus_per_node}", source=source,
                                  field="resources.gpus_per_node (--gpus)"))
    time_seconds = parse_time(res.time, source=source, field="resources.time (--time)") if res.time \
        else profile.default_seconds
    if time_seconds > profile.max_seconds:
        problems.append(UserError(f"time {res.time} is longer than cluster {profile.name!r} allows "
                                  f"({profile.max_time})", source=source, field="resources.time (--time)"))
    elif time_seconds <= profile.signal_seconds:
        problems.append(UserError(f"time limit {sbatch_time(time_seconds)} is not longer than the profile's "
                                  f"signal_seconds ({profile.signal_seconds} s before the limit, to checkpoint); ask "
                                  "for more time", source=source, field="resources.time (--time)"))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise UserErrors(problems)
    procs = cfg.launch.processes_per_node or max(gpus, 1)
    if gpus and procs != gpus:
        raise UserError(f"{procs} processes per node with {gpus} GPUs per node: use one process per GPU",
                        source=source, field="launch.processes_per_node")
    if not gpus and cfg.launch.strategy == "fsdp":
        raise UserError("fsdp needs GPUs (accelerate's FSDP plugin asks for the current CUDA device); on CPU nodes "
                        "use launch.strategy: ddp or deepspeed", source=source, field="launch.strategy")
    cpus, mem = node_request(profile, gpus)
    if not gpus and procs > cpus:
        raise UserError(f"{procs} processes per node on a CPU-only request of {cpus} CPUs per node (the profile's "
                        "cpus_per_node_cpu_only): use at most one process per CPU", source=source,
                        field="launch.processes_per_node")
    output_dir = Path(cfg.output_dir) if cfg.output_dir else layout.default_output_dir(run_dir)
    spec = JobSpec(
        run_id=run_dir.name, run_dir=run_dir, output_dir=output_dir, cluster=profile.name,
        scheduler=profile.scheduler, nodes=nodes, gpus_per_node=gpus, processes_per_node=procs,
        cpus_per_task=cpus, mem=mem, time_seconds=time_seconds,
        partition=res.partition or profile.partition,
    )
    spec.sbatch_options = sbatch_options(profile, spec, cfg.name)
    spec.launch = plan_launch(run_dir=run_dir, nodes=nodes, processes_per_node=procs, strategy=cfg.launch.strategy,
                              launcher=cfg.launch.launcher)
    return spec


def sbatch_options(profile: ClusterProfile, spec: JobSpec, job_name: str) -> list[tuple[str, Optional[str]]]:
    """The #SBATCH lines as (option, value) pairs, in a fixed order; values are quoted by the template."""
    opts: list[tuple[str, Optional[str]]] = [
        ("job-name", job_name),
        ("nodes", str(spec.nodes)),
        ("ntasks-per-node", "1"),
        ("cpus-per-task", str(spec.cpus_per_task)),
        ("mem", spec.mem),
        ("time", spec.time),
    ]
    if spec.gpus_per_node:
        gpu = f"{profile.gpu_type}:{spec.gpus_per_node}" if profile.gpu_type else str(spec.gpus_per_node)
        if profile.gpu_request == "gres":
            opts.append(("gres", f"gpu:{gpu}"))
        else:
            opts.append(("gpus-per-node", gpu))
    for name in ("partition", "account", "qos", "constraint", "mail_user", "mail_type"):
        value = spec.partition if name == "partition" else getattr(profile, name)
        if value:
            opts.append((name.replace("_", "-"), value))
    opts += [
        ("output", str(spec.run_dir / "jobs" / "%j_0_log.out")),
        ("open-mode", "append"),
        ("signal", f"{profile.signal}@{profile.signal_seconds}"),
        ("requeue", None),
    ]
    for line in profile.extra_sbatch:
        key, _, value = line[2:].partition("=")
        opts.append((key, value or None))
    return opts
