"""Slurm job arrays in `sacct` output: which row belongs to which array task. Pure (no Slurm here), unit-tested
against sacct output captured on the dev cluster (tests/data/sacct_array_*.txt).

What sacct (Slurm 22.05, ``-X --duplicates -P``) shows for an array ``6`` of four tasks with ``%2``:
- pending tasks that never started are ONE row, ``6_[1-3%2]`` (or ``6_[1,3-5]``), with JobIDRaw 6 (the array's
  own record);
- a task that started has its own row, ``6_0``, with a raw id of its own (``6_0`` -> 7); the LAST task to start
  takes over the array's raw id (``6_3`` -> 6), so a raw id alone does not name a task;
- a task requeued (``scontrol requeue 6_0``, or on its own after a signal) keeps its raw id and gets one more row
  per instance: REQUEUED, then PENDING/RUNNING/..., oldest first;
- ``sacct -j 6_2`` for a task still inside the pending ``6_[...]`` row shows nothing: ask for the array (``-j 6``).
So rows are keyed by JobID, the ``ARRAY_TASK`` form a member records as its job id (also what ``scancel``,
``scontrol requeue`` and ``--dependency`` accept), pending ranges are expanded to every index, and the query names
the array id once for all its members.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

_TASK = re.compile(r"^(\d+)_(\d+)\Z")
_PENDING = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]\Z")
MAX_INDEX = 10_000_000  # far above Slurm's MaxArraySize; a range beyond it is garbage, not expanded


def is_task(job_id: str) -> bool:
    return bool(_TASK.match(job_id))


def array_of(job_id: str) -> str:
    """``6_0`` -> ``6``; a plain job id is its own."""
    m = _TASK.match(job_id)
    return m.group(1) if m else job_id


def task_id(array_id: str, index: int) -> str:
    return f"{array_id}_{index}"


def indices(spec: str) -> list[int]:
    """``1-3,7`` -> [1, 2, 3, 7] (a ``%K`` limit is not part of ``spec``)."""
    out: list[int] = []
    for part in spec.split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return []
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or b > MAX_INDEX:
            return []
        out.extend(range(a, b + 1))
    return out


def expand(job_id: str) -> list[str]:
    """The job ids one sacct JobID stands for: ``6_[1-3%2]`` -> ['6_1', '6_2', '6_3']; ``6_0`` and ``12`` are
    themselves."""
    m = _PENDING.match(job_id)
    if m:
        return [task_id(m.group(1), i) for i in indices(m.group(2))]
    return [job_id]


def query_ids(job_ids: Iterable[str]) -> list[str]:
    """What to pass to ``sacct -j``: each plain job once, each array once (whatever the number of its members)."""
    seen: dict[str, None] = {}
    for jid in job_ids:
        if jid:
            seen.setdefault(array_of(jid), None)
    return list(seen)


def group_rows(rows: Iterable[list[str]], id_column: int = 0) -> dict[str, list[list[str]]]:
    """sacct rows (fields already split, oldest first as ``--duplicates`` lists them) grouped by the job id each
    stands for (``id_column`` holds sacct's JobID): every instance of a job or array task, oldest first. A pending
    ``6_[...]`` row counts only for the tasks it names that have no row of their own: a task that started never
    goes back into the array's pending record, and that record's row can be stale. Slurm 22.05 rewrites its JobID
    (the task list) only every 5 s (accounting_storage_slurmdbd.c's db-index pass), so when the array's record
    has just become the last pending task and is cancelled in that window, sacct shows the OLD range with the NEW
    state (``6_[2-3%2]  CANCELLED``) although task 2 is running under its own row."""
    own: dict[str, list[list[str]]] = {}
    ranged: dict[str, list[list[str]]] = {}
    for row in rows:
        if len(row) <= id_column:
            continue
        jid = row[id_column]
        for task in expand(jid):
            (own if task == jid else ranged).setdefault(task, []).append(row)
    return {**ranged, **own}


def stale_range_tasks(groups: dict[str, list[list[str]]], is_live: Callable[[str], bool], id_column: int = 0,
                      state_column: int = 1) -> set[str]:
    """The tasks whose newest row is an array's pending-range row in an ENDED state while a task of the same array
    still runs or waits under a row of its own: that range row may be stale, not news. Seen on the dev cluster
    (Slurm 22.05): with ``0-3%2``, ``scancel 1_3`` just after task 2 was split off the array's record left sacct
    showing ``1_[2-3%2]  CANCELLED`` for good (the record, now task 3, was never rewritten), and task 2 had no row
    of its own for about a second, then ran to COMPLETED. So such a task is not reported (its recorded state
    stands) until the array's other tasks have ended; then the range row is the truth (a whole array cancelled
    while tasks waited shows the same row)."""
    live_arrays = {array_of(jid) for jid, rows in groups.items()
                   if rows and rows[-1][id_column] == jid and is_live(rows[-1][state_column])}
    return {jid for jid, rows in groups.items()
            if rows and rows[-1][id_column] != jid and not is_live(rows[-1][state_column])
            and array_of(jid) in live_arrays}
