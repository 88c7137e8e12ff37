"""The Scheduler interface. ``render`` never touches a scheduler, so a dry run has no side effects."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.states import State


@dataclass
class JobInfo:
    job_id: str
    state: State
    raw_state: str = ""
    elapsed: Optional[int] = None
    nodelist: str = ""
    exit_code: str = ""
    gpu_seconds: Optional[float] = None  # elapsed x GPUs, summed over every instance of a requeued job; None: unknown
    elapsed_all: Optional[int] = None  # elapsed summed over every instance (for GPU-hours where sacct has no GPUs)


class Scheduler(abc.ABC):
    name: str = ""

    def __init__(self) -> None:
        self.calls = 0  # scheduler commands run: status must make one, whatever the number of jobs

    @abc.abstractmethod
    def submit(self, run_dir: Path, script: str, program: Any, *, time_seconds: int, max_requeues: int) -> str:
        """Submit ``script`` (already rendered) that runs ``program`` (a picklable callable) on each node."""

    @abc.abstractmethod
    def query(self, job_ids: list[str], run_dirs: dict[str, Path]) -> dict[str, JobInfo]:
        """States of many jobs with one scheduler call."""

    @abc.abstractmethod
    def cancel(self, job_id: str, run_dir: Path) -> None: ...

    @abc.abstractmethod
    def requeue_running(self, job_id: str) -> None:
        """Put a live job back in the queue (same job id)."""
