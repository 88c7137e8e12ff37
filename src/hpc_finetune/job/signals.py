"""The checkpoint signals in a trainer, caught from the first line of `train()`.

Two signals ask a trainer to save and stop: the profile's warning signal (``HPCFT_CHECKPOINT_SIGNAL``, USR2 by
default: the time limit is near, or a site that sends the user's signal on preemption) and SIGTERM (Slurm's
preemption with a ``GraceTime``; also ``scancel`` and a node's shutdown, which a trainer cannot tell apart: it saves
anyway, a checkpoint never hurts, and the node program decides whether the job requeues).

The handler only records the request; the trainer acts at its next safe point (``SaveOnSignalCallback``): right after
start-up, before any step (nothing new to save), or at the end of an optimizer step (save, then stop). It is
installed before the model loads, so a warning during a long start-up (a 70B load takes minutes) is remembered.

The node program and the trainers of one node share a node-local directory per job segment (``HPCFT_SIGNAL_DIR``):

- ``trainer-PID``: written by each trainer once its handler is installed; the node program signals exactly these
  processes (torch elastic starts each worker in its own session, out of reach of any process-group signal);
- ``stop``: written by the node program *before* it forwards a signal. A trainer still starting (between its exec and
  its handler, while the launcher's SIG_IGN was in force) finds it when it installs the handler, and every trainer
  looks at it at each safe point, so no delivery path can lose the request.

Compute-side protocol between the node program (job/launch.py) and the trainers (train/): it lives in job/ so
that the node program never imports the training package. Standard library only.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Optional

from hpc_finetune.envvars import CHECKPOINT_SIGNAL, DEFAULT_CHECKPOINT_SIGNAL, SIGNAL_DIR

STOP_FILE = "stop"
TRAINER_PREFIX = "trainer-"

_request: dict[str, Optional[object]] = {"signal": None, "at": None}


def checkpoint_signals() -> list[signal.Signals]:
    """The profile's warning signal (HPCFT_CHECKPOINT_SIGNAL, set by the job script) and SIGTERM."""
    name = os.environ.get(CHECKPOINT_SIGNAL, DEFAULT_CHECKPOINT_SIGNAL).upper()
    warning = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
    return [warning] if warning == signal.SIGTERM else [warning, signal.SIGTERM]


def _handler(signum: int, frame: object) -> None:  # noqa: ARG001
    if _request["signal"] is None:
        _request.update(signal=signal.Signals(signum).name, at=time.time())


def reset() -> None:
    """Forget a stop request of an earlier training in this process (in-process runs, tests); the node program's
    stop file, if there is one, is read again by ``install``."""
    _request.update(signal=None, at=None)


def install() -> None:
    """Catch the checkpoint signals in this process, register it with the node program, and pick up a request that
    came before the handler. Idempotent."""
    try:
        for signum in checkpoint_signals():
            signal.signal(signum, _handler)
    except ValueError:
        pass  # not the main thread (train() called from a thread): the stop file still reaches it
    folder = os.environ.get(SIGNAL_DIR)
    if folder:
        try:
            (Path(folder) / f"{TRAINER_PREFIX}{os.getpid()}").touch()
        except OSError:
            pass  # the node program's folder is gone: the job is ending anyway
    received()


def received() -> Optional[str]:
    """The name of the signal that asked this trainer to stop (its own handler, or the node program's stop file),
    else None. Cheap enough for every optimizer step: one failed open() on node-local storage."""
    if _request["signal"] is None:
        folder = os.environ.get(SIGNAL_DIR)
        if folder:
            try:
                name = (Path(folder) / STOP_FILE).read_text().strip()
            except OSError:
                return None
            _request.update(signal=name or "stop", at=time.time())
    return _request["signal"]  # type: ignore[return-value]


def request_stop(folder: Path | str, signame: str) -> None:
    """The node program's side: record the request for trainers that start or look later (before forwarding)."""
    path = Path(folder) / STOP_FILE
    tmp = path.with_name(f".{STOP_FILE}.{os.getpid()}")
    tmp.write_text(signame + "\n")
    os.replace(tmp, path)  # a trainer never reads a half-written name


def registered_trainers(folder: Path | str) -> list[int]:
    """Process ids of the trainers that installed their handler under this node program."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(n[len(TRAINER_PREFIX):]) for n in names
                  if n.startswith(TRAINER_PREFIX) and n[len(TRAINER_PREFIX):].isdigit())

