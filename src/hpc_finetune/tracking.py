"""Bring run records up to date with one scheduler call per scheduler kind (never one per job)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from hpc_finetune.records import Registry, RunRecord, load_record, read_json
from hpc_finetune.scheduler import Scheduler, get_scheduler
from hpc_finetune.states import ENDED, LIVE


def progress_of(rec: RunRecord) -> Optional[dict]:
    """The trainer's summary when it finished, else its latest progress line."""
    out_dir = Path(rec.output_dir)
    return read_json(out_dir / "summary.json") or read_json(out_dir / "progress.json")


def attempts(rec: RunRecord) -> list[dict]:
    """Job segments as node 0 logged them (start, checkpointed/requeued, completed, failed)."""
    import json

    path = Path(rec.run_dir) / "attempts.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def auto_requeues(rec: RunRecord) -> int:
    return sum(1 for a in attempts(rec) if a.get("event") == "requeued")


def refresh(registry: Registry, records: list[RunRecord],
            schedulers: Optional[dict[str, Scheduler]] = None) -> dict[str, Scheduler]:
    """Query the live jobs of ``records`` (batched), update records on disk and the index. Returns schedulers."""
    schedulers = schedulers if schedulers is not None else {}
    by_kind: dict[str, list[RunRecord]] = defaultdict(list)
    for rec in records:
        if rec.state in LIVE and rec.segments:
            by_kind[rec.scheduler].append(rec)
    for kind, recs in by_kind.items():
        sched = schedulers.setdefault(kind, get_scheduler(kind))
        infos = sched.query([r.job_id for r in recs], {r.job_id: Path(r.run_dir) for r in recs})
        for rec in recs:
            info = infos.get(rec.job_id)
            seg = rec.segments[-1]
            changed = False
            if info is not None:
                changed = (seg.state, seg.elapsed, seg.nodelist) != (info.state, info.elapsed, info.nodelist)
                seg.state, seg.elapsed, seg.nodelist = info.state, info.elapsed, info.nodelist or seg.nodelist
                if rec.state != info.state:
                    rec.state, changed = info.state, True
                if info.state in ENDED and not seg.reason:
                    seg.reason = info.raw_state
            auto = auto_requeues(rec)
            if auto != rec.auto_requeues:
                rec.auto_requeues, changed = auto, True
            progress = progress_of(rec)
            if changed:
                rec.save()
            registry.upsert(rec, progress)
    return schedulers


def current(registry: Registry, run: str) -> RunRecord:
    """One run (id or run directory), brought up to date with the scheduler."""
    rec = load_record(registry, run)
    refresh(registry, [rec])
    return rec
