"""A `training.callbacks` entry that makes start-up deliberately slow, for the signal-during-start-up tests.

Built before the model loads (training.callbacks are imported and built first), after the trainer's signal handler is
installed: it writes GATE/started-PID, then waits until GATE/go exists (GATE is $HPCFT_TEST_GATE; no variable, no
wait). A test signals the job while every trainer waits here, then opens the gate: the model loads after the signal.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from transformers import TrainerCallback


class StartupGate(TrainerCallback):
    LIMIT_SECONDS = 600  # a test that never opens the gate fails on its own timeout, not by hanging the job forever

    def __init__(self) -> None:
        gate = os.environ.get("HPCFT_TEST_GATE")
        if not gate:
            return
        (Path(gate) / f"started-{os.getpid()}").touch()
        deadline = time.monotonic() + self.LIMIT_SECONDS
        while not (Path(gate) / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
