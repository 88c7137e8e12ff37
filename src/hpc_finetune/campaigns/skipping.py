"""How `status` shows a stage whose chain broke: "skipped: train failed", not "pending" forever. A pure rule.

What Slurm 22.05 does (dev cluster, see README "Chained stages"): a job queued with ``--dependency=afterok:ID
--kill-on-invalid-dep=yes`` is cancelled by Slurm itself the moment ID fails (sacct: ``CANCELLED``, Reason
``Dependency``, Start ``None``), and so is every job after it at the same moment; without kill-on-invalid-dep it
stays ``PENDING`` with Reason ``DependencyNeverSatisfied`` forever. Either way it never ran, because a job before it
did not complete; that is what the user needs to read, with the first failure of the chain named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from hpc_finetune.states import CANCELLED, COMPLETED, LIVE, PENDING

NOT_RUN = frozenset({PENDING, CANCELLED})  # the states of a job that a broken dependency kept from running
FINE = LIVE | {COMPLETED}  # a job before it in one of these: nothing to say (yet)
SKIPPED = "skipped"


@dataclass(frozen=True)
class ChainJob:
    """What the rule needs of one job of a chain (from its record and the index)."""

    run_id: str
    kind: str  # its stage: prepare, train, select, merge, eval, report
    state: str  # its own state (states.py)
    after: tuple[str, ...] = ()  # run ids it waits on
    after_any: bool = False  # afterany: it runs however they ended (select)


def shown_states(jobs: Iterable[ChainJob]) -> dict[str, str]:
    """run_id -> what the STATE column says: the job's own state, or ``skipped: <stage> <state>`` for a job that
    never ran because one before it did not complete (the first such job of the chain is named, so every job of a
    broken tail says the same). Jobs before it that are not in ``jobs`` are taken as fine."""
    by_id = {j.run_id: j for j in jobs}
    shown: dict[str, str] = {}

    def show(job: ChainJob, visiting: frozenset = frozenset()) -> str:
        if job.run_id in shown:
            return shown[job.run_id]
        text = job.state
        if job.state in NOT_RUN and not job.after_any and job.run_id not in visiting:
            for dep_id in job.after:
                dep = by_id.get(dep_id)
                if dep is None:
                    continue
                dep_text = show(dep, visiting | {job.run_id})
                if dep_text.startswith(SKIPPED):
                    text = dep_text
                    break
                if dep_text not in FINE:
                    text = f"{SKIPPED}: {dep.kind} {dep_text}"
                    break
        shown[job.run_id] = text
        return text

    for job in by_id.values():
        show(job)
    return shown


def is_skipped(text: str) -> bool:
    return text.startswith(SKIPPED)


def skipped_in(registry, rows: list[dict]) -> dict[str, str]:
    """For `status`: run_id -> "skipped: ..." for the rows (index rows as dicts) of chain jobs that a failure before
    them kept from running. Reads the index for the rest of their campaigns and the record.json of the campaign's
    jobs that never ran (for what they wait on); nothing when no such row is shown."""
    import json
    from pathlib import Path

    from hpc_finetune.campaigns.stages import STAGES

    wanted = [d for d in rows if d.get("campaign") and d.get("state") in NOT_RUN]
    if not wanted:
        return {}
    jobs: list[ChainJob] = []
    for campaign in sorted({d["campaign"] for d in wanted}):
        rows_c = registry.campaign_rows(campaign)
        if all(r["state"] in FINE for r in rows_c):
            continue  # nothing in it failed: no record needs reading (a big sweep's status stays cheap)
        for r in rows_c:
            after: tuple[str, ...] = ()
            if r["state"] in NOT_RUN:
                try:
                    after = tuple(json.loads((Path(r["run_dir"]) / "record.json").read_text()).get("after", []))
                except (OSError, ValueError, AttributeError):
                    after = ()
            kind = r["kind"] or "train"
            jobs.append(ChainJob(r["run_id"], kind, r["state"], after,
                                 after_any=STAGES[kind].after_any if kind in STAGES else False))
    shown = shown_states(jobs)
    return {d["run_id"]: shown[d["run_id"]] for d in wanted
            if d["run_id"] in shown and is_skipped(shown[d["run_id"]])}
