"""One table from scheduler states to hpc-finetune's own run states."""

from __future__ import annotations

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, REQUEUED, UNKNOWN = (
    "pending", "running", "completed", "failed", "cancelled", "timeout", "preempted", "node_fail", "requeued",
    "unknown")
TRAINER_ERROR = "trainer error"  # attempts.jsonl event: the training core's one-line error (status shows it)
STOPPED = "stopped"  # ours, not Slurm's: saved and ended on purpose at the requeue limit (see segments.py)

SLURM_STATES = {
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


def from_slurm(state: str) -> str:
    """``CANCELLED by 0`` -> cancelled; unknown words -> unknown."""
    word = state.split()[0].rstrip("+") if state.strip() else ""
    return SLURM_STATES.get(word, UNKNOWN)
