"""Bring run records up to date with one scheduler call per scheduler kind (never one per job)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from hpc_finetune.records import NO_RESULT, Registry, RunRecord, load_record, read_json
from hpc_finetune.scheduler import Scheduler, get_scheduler
from hpc_finetune.job.segments import read_events
from hpc_finetune.states import BOOKKEEPING, CONTINUED, ENDED, ENDED_ON_PURPOSE, FAILED, LIVE, Event, run_state


def progress_of(rec: RunRecord) -> Optional[dict]:
    """The trainer's summary when it finished, else its latest progress line."""
    out_dir = Path(rec.output_dir)
    return read_json(out_dir / "summary.json") or read_json(out_dir / "progress.json")


def run_events(rec: RunRecord) -> list[dict]:
    """What the run's jobs logged about their segments (start, requeued/stopped, trainer exited, retrying/gave up,
    completed), oldest first."""
    return read_events(rec.run_dir)


def auto_requeues(events: list[dict]) -> int:
    return sum(1 for a in events if a.get("event") in CONTINUED)


def end_reason(events: list[dict]) -> str:
    """Why an ended run stopped, as the job itself wrote it: the trainer's own one-line error of the last segment
    (bad data, a bad setting), and/or the requeue limit or repeated failure; else ''."""
    last = next((e for e in reversed(events) if e.get("event") not in BOOKKEEPING), None)
    why = str(last.get("reason", "")) if last and last.get("event") in ENDED_ON_PURPOSE else ""
    error = ""
    for e in reversed(events):  # the trainer's error in the last segment only
        if e.get("event") == Event.START:
            break
        if e.get("event") == Event.TRAINER_ERROR and e.get("reason"):
            error = str(e["reason"])
            break
    return "; ".join(p for p in (error, why) if p)


def _needs_look(rec: RunRecord) -> bool:
    """Live, or a local job judged ended without a result (a later look may find it alive or successful)."""
    return bool(rec.segments) and (rec.state in LIVE or (rec.state == FAILED and rec.reason == NO_RESULT))


def refresh(registry: Registry, records: list[RunRecord],
            schedulers: Optional[dict[str, Scheduler]] = None) -> dict[str, Scheduler]:
    """Query the live jobs of ``records`` (batched), update records on disk and the index. Returns schedulers."""
    schedulers = schedulers if schedulers is not None else {}
    by_kind: dict[str, list[RunRecord]] = defaultdict(list)
    for rec in records:
        if _needs_look(rec):
            by_kind[rec.scheduler].append(rec)
    for kind, recs in by_kind.items():
        sched = schedulers.setdefault(kind, get_scheduler(kind))
        infos = sched.query([r.job_id for r in recs], {r.job_id: Path(r.run_dir) for r in recs})
        for rec in recs:
            info = infos.get(rec.job_id)
            seg = rec.segments[-1]
            events = run_events(rec)
            state = run_state(info.state if info is not None else rec.state, events)
            changed = False
            if info is not None or state != rec.state:
                changed = (rec.state, seg.state) != (state, state)
                rec.state = seg.state = state
            if info is not None:
                changed = changed or (seg.elapsed, seg.nodelist, seg.gpu_seconds) != \
                    (info.elapsed, info.nodelist, info.gpu_seconds)
                seg.elapsed, seg.nodelist = info.elapsed, info.nodelist or seg.nodelist
                seg.gpu_seconds = info.gpu_seconds
                if seg.gpu_seconds is None and info.elapsed_all:  # a site that does not account GPUs in Slurm
                    seg.gpu_seconds = float(info.elapsed_all * rec.nodes * rec.gpus_per_node)
                if state in ENDED and (not seg.reason or seg.reason == NO_RESULT):
                    seg.reason = info.raw_state
                verdict = NO_RESULT if info.raw_state == NO_RESULT else ""
                if (rec.reason == NO_RESULT and not verdict) or (verdict and not rec.reason):
                    rec.reason, changed = verdict, True
            auto = auto_requeues(events)
            if auto != rec.auto_requeues:
                rec.auto_requeues, changed = auto, True
            why = end_reason(events) if rec.state in ENDED else ""
            if why and why != rec.reason:
                rec.reason, changed = why, True
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
