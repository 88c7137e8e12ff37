"""Reading runs' state for the terminal and for waiting: the registry's rows, refreshed from the scheduler.

Part of the run service (runs.py re-exports it); a module of its own so that `status`, the command run most often,
imports nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from hpc_finetune.records import Registry, RunRecord
from hpc_finetune.states import COMPLETED, LIVE


def wait_run(registry: Registry, rec: RunRecord, poll_seconds: float = 2.0) -> RunRecord:
    """Poll the scheduler until the run's job is no longer live; returns the record (``rec.state`` is final)."""
    import time

    from hpc_finetune.tracking import refresh

    while True:
        refresh(registry, [rec])
        if rec.state not in LIVE:
            return rec
        time.sleep(poll_seconds)


def succeeded(rec: RunRecord) -> bool:
    return rec.state == COMPLETED


def status_rows(registry: Registry, run: Optional[str], last: Optional[int] = None) -> list[dict]:
    """The registry's rows (one run, or every live run refreshed from the scheduler plus the ``last`` most recent),
    each a dict with its progress parsed; a run whose record cannot be read shows as "unreadable" with why."""
    import json

    from hpc_finetune.records import UnreadableRecord
    from hpc_finetune.tracking import current, refresh

    unreadable: dict[str, str] = {}
    if run is not None and is_campaign_name(registry, run):  # its runs, one row each (one sacct call)
        from hpc_finetune.campaigns.status import campaign_rows

        from hpc_finetune.campaigns.skipping import skipped_in

        rows_c = campaign_rows(registry, run)
        shown = skipped_in(registry, rows_c)
        for d in rows_c:
            d["state"] = shown.get(d["run_id"], d["state"])
        return rows_c
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
    if not any(d.get("campaign") for d in out):
        return out  # no campaign among them: nothing to fold or skip (and nothing more to import)
    from hpc_finetune.campaigns.skipping import skipped_in

    skipped = skipped_in(registry, out)  # chain jobs that a failure before them kept from running
    for d in out:
        d["state"] = skipped.get(d["run_id"], d["state"])
    if run is None:  # a campaign's runs fold into one row (counts and best from the index alone)
        from hpc_finetune.campaigns.status import fold, parsed_row

        def campaign_runs(campaign: str) -> list[dict]:
            runs = [parsed_row(dict(r), parsed) for r in registry.campaign_rows(campaign)]
            shown = skipped_in(registry, runs)
            for d in runs:
                d["state"] = shown.get(d["run_id"], d["state"])
            return runs

        out = fold(out, campaign_runs)
    return out


def is_campaign_name(registry: Registry, name: str) -> bool:
    """A campaign id (not a run id): read from the index first, so a plain run's status imports no campaign code."""
    if registry.exists(name) or (Path(name) / "record.json").is_file():
        return False
    from hpc_finetune.campaigns.store import is_campaign

    return is_campaign(registry, name)
