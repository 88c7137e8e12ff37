"""Scheduler backends: a small interface (submit, query many at once, cancel, requeue) and two implementations."""

from __future__ import annotations

from hpc_finetune.scheduler.base import JobInfo, Scheduler


def get_scheduler(kind: str) -> Scheduler:
    if kind == "slurm":
        from hpc_finetune.scheduler.slurm import SlurmScheduler

        return SlurmScheduler()
    from hpc_finetune.scheduler.local import LocalScheduler

    return LocalScheduler()


__all__ = ["JobInfo", "Scheduler", "get_scheduler"]
