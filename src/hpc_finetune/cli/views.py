"""Terminal views of runs shared by several commands (`status`, `submit --wait`, `eval --submit --wait`)."""

from __future__ import annotations

import sys
import time

from hpc_finetune.records import Registry, RunRecord
from hpc_finetune.timefmt import format_time


def _progress_text(progress: dict | None) -> str:
    if not progress:
        return ""
    step, total = progress.get("step"), progress.get("max_steps")
    loss = progress.get("final_loss", progress.get("loss"))
    parts = []
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    return " ".join(parts)


def table(rows: list[dict]) -> str:
    head = ("RUN", "STATE", "JOB", "NODESxGPUS", "ELAPSED/LIMIT", "PROGRESS")
    lines = [head]
    for d in rows:
        if d.get("kind") == "campaign":
            from hpc_finetune.campaigns.status import table_cells

            lines.append(table_cells(d))
            continue
        lines.append((d["run_id"], d["state"] + (f" (requeues {d['requeues']})" if d["requeues"] else ""),
                      d["job_id"] or "-", f"{d['nodes']}x{d['gpus_per_node']}",
                      f"{format_time(d['elapsed'])}/{format_time(d['time_seconds'])}",
                      _progress_text(d["progress"]) + (f"  [{d['reason']}]" if d.get("reason") else "")))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def segments_text(rec: RunRecord) -> str:
    lines = [f"run {rec.run_id}: {rec.state}{' - ' + rec.reason if rec.reason else ''}; "
             f"{len(rec.segments)} job(s), {rec.requeues + rec.auto_requeues} requeue(s); run dir {rec.run_dir}"]
    for i, s in enumerate(rec.segments, 1):
        lines.append(f"  {i}. job {s.job_id} ({s.started_by}) {s.state} {s.reason} "
                     f"elapsed {format_time(s.elapsed)} nodes {s.nodelist or '-'}")
    from hpc_finetune.tracking import run_events

    events = run_events(rec)
    if events:
        lines.append("  segments as the job logged them (restart = Slurm's requeue count within one job):")
        for a in events:
            stamp = time.strftime("%H:%M:%S", time.localtime(a["time"]))
            text = f"    {stamp} job {a['job_id']} restart {a.get('restart', 0)} on {a['host']}: {a['event']}"
            if "step" in a:
                text += f" at step {a['step']}"
            for key in ("returncode", "status"):
                if key in a:
                    text += f", exit status {a[key]}"
            if a.get("reason"):
                text += f" - {a['reason']}"
            lines.append(text)
    return "\n".join(lines)


def wait_and_print(registry: Registry, rec: RunRecord) -> int:
    """Wait until the run's job ends; print its status line; exit 0 only if it completed."""
    from hpc_finetune.runstatus import status_rows, succeeded, wait_run

    wait_run(registry, rec)
    print(table(status_rows(registry, rec.run_id)))
    if not succeeded(rec):
        print(f"run {rec.run_id} ended {rec.state}; see `hpc-finetune logs {rec.run_id}`", file=sys.stderr)
        return 1
    return 0


def wait_chain_and_print(registry: Registry, records: list[RunRecord]) -> int:
    """Wait until every job of a chain has ended (or was skipped); print their status; 0 only if all completed."""
    import time
    from pathlib import Path

    from hpc_finetune.runstatus import status_rows, succeeded
    from hpc_finetune.states import LIVE
    from hpc_finetune.tracking import refresh

    while True:
        records = [RunRecord.load(Path(r.run_dir)) for r in records]  # a local chain's runner writes them
        refresh(registry, records)
        if all(r.state not in LIVE for r in records):
            break
        time.sleep(2)
    print(table([row for r in records for row in status_rows(registry, r.run_id)]))
    bad = [r.run_id for r in records if not succeeded(r)]
    if bad:
        print(f"not completed: {', '.join(bad)}; see `hpc-finetune logs RUN`", file=sys.stderr)
        return 1
    return 0
