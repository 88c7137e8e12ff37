"""``hpc-finetune logs RUN [-f]``: the log of the run's latest job (task 0 unless --task)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hpc_finetune.errors import UserError
from hpc_finetune.records import Registry, load_record
from hpc_finetune.states import LIVE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (see `status`) or run directory")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    p.add_argument("--task", type=int, default=0, help="task (node) number, default 0")
    p.add_argument("--job", help="a job id of the run's history (default: the latest)")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.tracking import refresh

    registry = Registry()
    rec = load_record(registry, args.run)
    job_id = args.job or rec.job_id
    if job_id not in {s.job_id for s in rec.segments}:
        raise UserError(f"job {job_id} is not part of run {rec.run_id} "
                        f"(jobs: {', '.join(s.job_id for s in rec.segments)})", source="--job")
    path = Path(rec.run_dir) / "jobs" / f"{job_id}_{args.task}_log.out"
    pos = 0
    while True:
        if path.exists():
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        if not args.follow:
            if not path.exists():
                print(f"(no log yet for job {job_id}: {path})", file=sys.stderr)
            return 0
        refresh(registry, [rec])
        if rec.state not in LIVE or rec.job_id != job_id:
            if path.exists():
                with path.open("rb") as f:
                    f.seek(pos)
                    sys.stdout.write(f.read().decode("utf-8", "replace"))
            return 0
        time.sleep(1.0)
