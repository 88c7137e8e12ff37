"""A run's state: one enum, one table from scheduler states to it, and the one rule that reads the job's own events.

``State`` is a ``str`` enum: records, the sqlite index and ``status --json`` keep the plain words they always had
(``State.PENDING == "pending"``), and a word read back from an old record is the same state.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable, Mapping


class State(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    NODE_FAIL = "node_fail"
    REQUEUED = "requeued"
    UNKNOWN = "unknown"
    STOPPED = "stopped"  # ours, not Slurm's: saved and ended on purpose at the requeue limit (see segments.py)

    __str__ = str.__str__  # "pending", not "State.PENDING", in f-strings and tables
    __format__ = str.__format__

    @classmethod
    def parse(cls, word: object) -> "State":
        """A state word as stored in a record or the index; an unknown word is UNKNOWN."""
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN


# the members under their short names (``states.RUNNING``), as callers import them
(PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, REQUEUED, UNKNOWN, STOPPED) = (
    State.PENDING, State.RUNNING, State.COMPLETED, State.FAILED, State.CANCELLED, State.TIMEOUT, State.PREEMPTED,
    State.NODE_FAIL, State.REQUEUED, State.UNKNOWN, State.STOPPED)

TRAINER_ERROR = "trainer error"  # attempts.jsonl event: the training core's one-line error (status shows it)
BOOKKEEPING = ("trainer exited", TRAINER_ERROR)  # events that log a trainer's exit, not how the segment ended

SLURM_STATES: Mapping[str, State] = {
    "PENDING": PENDING, "CONFIGURING": PENDING, "REQUEUE_HOLD": PENDING, "REQUEUE_FED": PENDING,
    "REQUEUED": REQUEUED, "RESV_DEL_HOLD": PENDING, "SPECIAL_EXIT": FAILED,
    "RUNNING": RUNNING, "COMPLETING": RUNNING, "STAGE_OUT": RUNNING, "SIGNALING": RUNNING,
    "RESIZING": RUNNING, "SUSPENDED": RUNNING, "STOPPED": RUNNING,
    "COMPLETED": COMPLETED,
    "FAILED": FAILED, "OUT_OF_MEMORY": FAILED, "BOOT_FAIL": FAILED, "DEADLINE": TIMEOUT, "REVOKED": CANCELLED,
    "CANCELLED": CANCELLED, "TIMEOUT": TIMEOUT, "PREEMPTED": PREEMPTED, "NODE_FAIL": NODE_FAIL,
}
LIVE = frozenset({PENDING, RUNNING, REQUEUED, UNKNOWN})
ENDED = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, STOPPED})
REQUEUEABLE = frozenset({TIMEOUT, FAILED, PREEMPTED, NODE_FAIL, CANCELLED, STOPPED})


def from_slurm(state: str) -> State:
    """``CANCELLED by 0`` -> cancelled; unknown words -> unknown."""
    word = state.split()[0].rstrip("+") if state.strip() else ""
    return SLURM_STATES.get(word, UNKNOWN)


def run_state(scheduler_state: State, events: Iterable[Mapping[str, object]]) -> State:
    """The run's state from its job's scheduler state and the events the job logged (RUN_DIR/attempts.jsonl).

    The one case where the job knows better than the scheduler: a job that ended on purpose at the requeue limit,
    checkpoint saved (its last event is ``stopped``), exits non-zero, which Slurm calls FAILED; the run is STOPPED
    (requeueable by hand, not a crash). Every other scheduler state stands."""
    last = None
    for e in events:
        if e.get("event") not in BOOKKEEPING:
            last = e.get("event")
    if scheduler_state == FAILED and last == "stopped":
        return STOPPED
    return State(scheduler_state)
