"""Creating a run: claim its directory, write its files, submit its job and record it, or leave nothing behind.

Shared by `submit` and `eval --submit`. A run directory is claimed atomically (two submits of one name at once get
``name`` and ``name-2``); SIGTERM/SIGHUP while it is being written raise SystemExit so that it is removed; while the
scheduler takes the job, and until the job is recorded, they are held, then honoured (exit 128+N). A submit killed
mid-way leaves either nothing or a whole, recorded run, never an empty directory.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpc_finetune.records import Registry, RunRecord, Segment, claim_run_dir, now, write_atomic


@dataclass
class NewRun:
    """What a command builds for a claimed run directory."""

    record: RunRecord  # no segment yet
    script: str
    program: Any  # picklable callable that runs on each node
    max_requeues: int
    files: dict[str, str] = field(default_factory=dict)  # name -> text, written atomically into the run directory


_TERM: dict = {}


@contextlib.contextmanager
def _terminate_as_exception():
    def handler(signum, frame):  # noqa: ARG001
        if _TERM.get("deferred"):
            _TERM["pending"] = signum
            return
        raise SystemExit(128 + signum)

    sigs = (signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    _TERM.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pending = _TERM.pop("pending", None)
        _TERM.clear()
        if pending:
            raise SystemExit(128 + pending)


def create_run(registry: Registry, runs_root: Path, name: str, build: Callable[[Path], NewRun], *,
               hold: bool = False) -> RunRecord:
    """Claim ``runs_root/name[-N]``, let ``build`` render the run for it, write, submit, record; roll back on any
    failure. Returns the record, in the index, with its first segment. ``hold``: write and record it without a job
    (a local chain's job, which the local runner submits when the job before it has completed)."""
    from hpc_finetune.scheduler import get_scheduler

    with _terminate_as_exception():
        _TERM["deferred"] = True  # a signal between mkdir and the try below must not leave the directory behind
        run_dir = claim_run_dir(registry, runs_root, name)  # atomic: ours alone from here
        try:
            _TERM["deferred"] = False
            if _TERM.pop("pending", None):
                raise SystemExit(143)
            new = build(run_dir)
            for fname, text in new.files.items():
                write_atomic(run_dir / fname, text)
            rec = new.record
            rec.save()
            if hold:
                registry.upsert(rec)
                return rec
            _TERM["deferred"] = True  # the scheduler may accept the job, which must then be recorded whole
            job_id = get_scheduler(rec.scheduler).submit(run_dir, new.script, new.program,
                                                          time_seconds=rec.time_seconds,
                                                          max_requeues=new.max_requeues)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written: the directory was ours alone
            raise
        rec.segments.append(Segment(job_id=job_id, started_by="submit", submitted=now()))
        rec.save()
        registry.upsert(rec)
    return rec
