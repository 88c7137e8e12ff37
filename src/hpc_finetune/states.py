"""A run's state: one enum, one table from scheduler states to it, and the one rule that reads the job's own events.

``State`` and ``Event`` are ``str`` enums: records, the sqlite index, RUN_DIR/attempts.jsonl and ``status --json``
keep the plain words they always had (``State.PENDING == "pending"``), and a word read back from an old run compares
equal to its member. Standard library only: the node program and the training core log events with these words too.
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



class Event(str, Enum):
    """What a job logs about its segment (RUN_DIR/attempts.jsonl, ``segments.log_event``), in the order they come."""

    START = "start"  # the node program began (step: where it resumes)
    TRAINER_EXITED = "trainer exited"  # the trainers' launcher returned (returncode)
    TRAINER_ERROR = "trainer error"  # the training core's one-line error (status shows it)
    COMPLETED = "completed"  # training finished
    CHECKPOINTED = "checkpointed"  # saved on a signal, the trainers exited
    REQUEUED = "requeued"  # requeued itself on a time-limit or preemption signal
    STOPPED = "stopped"  # saved and ended on purpose: the requeue limit
    TERMINATED = "terminated"  # a SIGTERM that is no preemption: saved if it could, not requeued
    RETRYING = "retrying"  # failed, requeued by the retry policy
    GAVE_UP = "gave up"  # failed, not retried (segments.retry_decision says why)

    __str__ = str.__str__
    __format__ = str.__format__


TRAINER_ERROR = Event.TRAINER_ERROR
BOOKKEEPING = (Event.TRAINER_EXITED, Event.TRAINER_ERROR)  # a trainer's exit logged, not how the segment ended
CONTINUED = (Event.REQUEUED, Event.RETRYING)  # the segment handed over to the next one by itself
ENDED_ON_PURPOSE = (Event.STOPPED, Event.GAVE_UP, Event.TERMINATED)  # the job's own word on why the run ended

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
    if scheduler_state == FAILED and last == Event.STOPPED:
        return STOPPED
    return State(scheduler_state)
