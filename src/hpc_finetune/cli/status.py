"""``hpc-finetune status [RUN]``: every run (or one) with state, job, nodes x GPUs, time and progress."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hpc_finetune.records import Registry, RunRecord, UnreadableRecord, load_record
from hpc_finetune.timefmt import format_time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="one run id or run directory (default: all runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", nargs="?", const=5.0, type=float, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 5) until interrupted")
    p.add_argument("--segments", action="store_true", help="with RUN: list every job segment and why it ended")
    p.add_argument("--last", type=int, default=50, metavar="N",
                   help="show every live run and the N most recent others (default 50)")
    p.add_argument("--all", action="store_true", help="show every recorded run")


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


def collect(registry: Registry, run: str | None, last: int | None = None) -> list[dict]:
    from hpc_finetune.tracking import current, refresh

    unreadable: dict[str, str] = {}
    if run is not None:
        rows = registry.rows(current(registry, run).run_id)
    else:
        records = []
        for r in registry.live_rows():
            try:
                records.append(RunRecord.load(Path(r["run_dir"])))
            except UnreadableRecord as exc:  # one broken run must not hide the others
                unreadable[r["run_id"]] = str(exc)
        if records:
            refresh(registry, records)
        rows = registry.rows(last=last)
    out = []
    parsed: dict[str, dict] = {}
    for r in rows:
        d = dict(r)
        raw = d["progress"]
        if raw:
            if raw not in parsed:
                try:
                    parsed[raw] = json.loads(raw)
                except ValueError:
                    parsed[raw] = None
            d["progress"] = parsed[raw]
        if d["run_id"] in unreadable:
            d["state"], d["reason"] = "unreadable", unreadable[d["run_id"]]
        out.append(d)
    from hpc_finetune.campaigns.skipping import skipped_in

    skipped = skipped_in(registry, out)  # chain jobs that a failure before them kept from running
    for d in out:
        d["state"] = skipped.get(d["run_id"], d["state"])
    return out


def table(rows: list[dict]) -> str:
    head = ("RUN", "STATE", "JOB", "NODESxGPUS", "ELAPSED/LIMIT", "PROGRESS")
    lines = [head]
    for d in rows:
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
    from hpc_finetune.tracking import attempts

    events = attempts(rec)
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


def run(args: argparse.Namespace) -> int:
    registry = Registry()
    while True:
        rows = collect(registry, args.run, None if args.all else args.last)
        if args.json:
            text = json.dumps(rows, indent=1)
        else:
            text = table(rows) if rows else "no runs yet: `hpc-finetune submit RUN.yaml` starts one"
            hidden = 0 if args.run or args.all else registry.count() - len(rows)
            if hidden > 0:
                text += f"\n({hidden:,} older runs not shown: --all, or --last N)"
            if args.run and args.segments:
                text += "\n" + segments_text(load_record(registry, args.run))
        if args.watch:
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"every {args.watch:g}s\n" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
            continue
        print(text)
        return 0
