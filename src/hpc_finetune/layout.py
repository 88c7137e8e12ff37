"""What lives where inside a run directory: one owner for the names every side uses (login: the run service,
render, status; compute: the node program, the trainer). Standard library only."""

from __future__ import annotations

from pathlib import Path

RUN_YAML = "run.yaml"
PROFILE_YAML = "profile.yaml"
JOB_SCRIPT = "job.sh"
JOBS = "jobs"  # submitit's folder: pickles, results, the job logs
ACCELERATE_CONFIG = "accelerate_config.yaml"
DEEPSPEED_CONFIG = "deepspeed_config.json"


def default_output_dir(run_dir: Path | str) -> Path:
    """Where a run writes checkpoints and its final model when its config names no ``output_dir``."""
    return Path(run_dir) / "output"


def local_run_dir(name: str) -> Path:
    """The run directory of ``hpc-finetune train`` in this process (no submit, no run directory of its own)."""
    return Path.cwd() / "runs" / name
