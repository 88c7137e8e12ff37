"""The launch contract: which launcher a job uses, with which config files, which command each node runs and which
environment variables the trainers get. Computed once with the job spec (jobspec.resolve -> ``JobSpec.launch``);
render.py writes the files it names, the node program (job/launch.py) runs its command, the trainer (train/core.py)
finds the DeepSpeed JSON through it. Standard library only (pickled into the job with the node program).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpc_finetune import layout
from hpc_finetune.envvars import DEEPSPEED_CONFIG, LAUNCHER_ENV

LAUNCHERS = ("python", "torchrun", "accelerate")  # "python": one process, no launcher


@dataclass(frozen=True)
class LaunchPlan:
    launcher: str  # one of LAUNCHERS (the config's launch.launcher, or "python" for a single DDP process)
    strategy: str  # ddp | fsdp | deepspeed
    nodes: int
    processes_per_node: int
    run_dir: str
    files: tuple[str, ...] = ()  # config files the run directory holds for the launch (names: layout.*)
    env: dict[str, str] = field(default_factory=dict)  # set by the node program for the launcher and trainers

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node

    def path(self, name: str) -> Path:
        return Path(self.run_dir) / name

    def command(self, python: str, *, node_rank: int, main_addr: str, port: int) -> list[str]:
        """The command node ``node_rank`` runs (each node reads its own rank at run time)."""
        train = ["-m", "hpc_finetune.train", str(self.path(layout.RUN_YAML))]
        if self.launcher == "python":
            return [python, *train]
        if self.launcher == "torchrun":
            return [python, "-m", "torch.distributed.run", f"--nnodes={self.nodes}",
                    f"--nproc-per-node={self.processes_per_node}", f"--node-rank={node_rank}",
                    f"--master-addr={main_addr}", f"--master-port={port}", *train]
        return [python, "-m", "accelerate.commands.launch",
                "--config_file", str(self.path(layout.ACCELERATE_CONFIG)),
                "--num_machines", str(self.nodes), "--num_processes", str(self.world_size),
                "--machine_rank", str(node_rank), "--main_process_ip", main_addr,
                "--main_process_port", str(port), *train]


def plan_launch(*, run_dir: Path | str, nodes: int, processes_per_node: int, strategy: str,
                launcher: str) -> LaunchPlan:
    """The one rule for a launch: a single DDP process runs the trainer directly; torchrun with DDP needs no config
    file; every other launch runs from an accelerate config (and DeepSpeed's JSON for ``deepspeed``)."""
    world = nodes * processes_per_node
    if world == 1 and strategy == "ddp":
        launcher, files = "python", ()
    elif launcher == "torchrun" and strategy == "ddp":
        files = ()
    else:
        files = (layout.ACCELERATE_CONFIG,) + ((layout.DEEPSPEED_CONFIG,) if strategy == "deepspeed" else ())
    env = dict(LAUNCHER_ENV)
    if strategy == "deepspeed" and launcher == "torchrun":  # torchrun sets no accelerate environment
        env[DEEPSPEED_CONFIG] = str(Path(run_dir) / layout.DEEPSPEED_CONFIG)
    return LaunchPlan(launcher=launcher, strategy=strategy, nodes=nodes, processes_per_node=processes_per_node,
                      run_dir=str(run_dir), files=files, env=env)
