"""`status`'s campaign view: the runs of one campaign folded into one row (members completed/running/pending/failed,
best so far), from the index alone (no record is read, no scheduler call beyond status's one batched sacct)."""

from __future__ import annotations

import json
from typing import Any, Optional

from hpc_finetune.states import COMPLETED, FAILED, LIVE, PENDING, REQUEUED, RUNNING, UNKNOWN

GROUPS = (COMPLETED, RUNNING, PENDING, FAILED)  # the member counts of a campaign row


def group(state: str) -> str:
    """A run state as one of the four member counts (stopped, cancelled, timeout, ... count as failed)."""
    if state in (COMPLETED, RUNNING):
        return str(state)
    if state in (PENDING, REQUEUED, UNKNOWN) or state in LIVE:
        return str(PENDING)
    return str(FAILED)


def _loss(progress: Any) -> Optional[float]:
    if isinstance(progress, str):
        try:
            progress = json.loads(progress)
        except ValueError:
            return None
    if not isinstance(progress, dict):
        return None
    value = progress.get("final_loss", progress.get("loss"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summary(campaign: str, runs: list[dict]) -> dict:
    """One row for a campaign from its runs' index rows (``runs``: every run of it)."""
    members = [r for r in runs if (r.get("kind") or "train") == "train"]
    others = [r for r in runs if (r.get("kind") or "train") != "train"]
    counts = {g: 0 for g in GROUPS}
    for r in members:
        counts[group(r["state"])] += 1
    losses = [(loss, r["run_id"]) for r in members if (loss := _loss(r.get("progress"))) is not None]
    best = min(losses) if losses else None
    live = any(r["state"] in LIVE for r in runs)
    jobs = list(dict.fromkeys((r.get("job_id") or "").split("_")[0] for r in members if r.get("job_id")))
    first = members[0] if members else runs[0]
    if live:
        state = RUNNING if counts[RUNNING] or any(r["state"] == RUNNING for r in others) else PENDING
    else:
        state = COMPLETED if counts[COMPLETED] == len(members) and all(
            r["state"] == COMPLETED for r in others) else "ended"
    return {
        "run_id": campaign, "campaign": campaign, "kind": "campaign", "state": state, "members": len(members),
        "counts": counts, "stage_jobs": len(others), "stages": [[r.get("kind"), r["state"]] for r in others],
        "job_id": ",".join(jobs) or "-",
        "best": {"run_id": best[1], "train_loss": best[0]} if best else None,
        "nodes": first.get("nodes"), "gpus_per_node": first.get("gpus_per_node"),
        "created": min(r.get("created") or 0 for r in runs),
        "gpu_hours": round(sum(r.get("gpu_hours") or 0 for r in runs), 4),
        "requeues": sum(r.get("requeues") or 0 for r in runs),
    }


def counts_text(row: dict) -> str:
    c = row["counts"]
    text = f"{row['members']} member(s): " + ", ".join(f"{c[g]} {g}" for g in GROUPS)
    by_state: dict[str, list[str]] = {}
    for kind, state in row.get("stages") or []:  # the chain's stages by what they show: "merge+eval skipped: ..."
        by_state.setdefault(str(state), []).append(str(kind))
    if by_state:
        text += "; " + "; ".join(f"{'+'.join(kinds)} {state}" for state, kinds in by_state.items())
    return text


def best_text(row: dict) -> str:
    best = row.get("best")
    return f"best so far {best['run_id']} (train loss {best['train_loss']:.4g})" if best else ""


def table_cells(row: dict) -> tuple[str, ...]:
    """A campaign row in status's table: RUN, STATE, JOB, NODESxGPUS, ELAPSED/LIMIT, PROGRESS."""
    return (row["run_id"], f"campaign {row['state']}", row["job_id"], f"{row['nodes']}x{row['gpus_per_node']}", "-",
            "; ".join(t for t in (counts_text(row), best_text(row)) if t))


def heading(rows: list[dict]) -> str:
    """The line above `status CAMPAIGN`'s member rows."""
    head = summary(rows[0]["campaign"], rows)
    return f"campaign {head['campaign']} ({head['state']}): " + "; ".join(
        t for t in (counts_text(head), best_text(head)) if t)


def fold(rows: list[dict], members_of) -> list[dict]:
    """``rows`` (status's, oldest first) with every campaign's runs replaced by one campaign row where its first run
    stood. ``members_of(campaign)`` gives every run of the campaign as index rows (also those ``rows`` left out)."""
    out: list[dict] = []
    seen: set[str] = set()
    for r in rows:
        c = r.get("campaign") or ""
        if not c:
            out.append(r)
            continue
        if c in seen:
            continue
        seen.add(c)
        out.append(summary(c, members_of(c) or [r]))
    return out


def parsed_row(d: dict, cache: dict[str, dict]) -> dict:
    raw = d.get("progress")
    if isinstance(raw, str):
        if raw not in cache:
            try:
                cache[raw] = json.loads(raw)
            except ValueError:
                cache[raw] = None
        d["progress"] = cache[raw]
    return d


def campaign_rows(registry: "Registry", name: str) -> list[dict]:
    """Every run of one campaign, one row each (members in task order), brought up to date with one sacct call."""
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.tracking import refresh

    campaign, records = open_campaign(registry, name)
    refresh(registry, records)
    values = {m.run_id: m.values for m in campaign.members}
    parsed: dict[str, dict] = {}
    out = []
    for rec in records:
        for r in registry.rows(rec.run_id):
            d = parsed_row(dict(r), parsed)
            d["member"], d["values"] = rec.member, values.get(rec.run_id, {})
            out.append(d)
    return out
