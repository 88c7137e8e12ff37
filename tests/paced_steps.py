"""A `training.callbacks` entry for the time-limit tests: every optimizer step takes at least SECONDS of wall time.

How much training a 2-minute Slurm segment holds must not depend on how busy this machine's two cores are (three jobs
share them, and they go quiet and busy at different times as each job requeues). Pacing makes the work a fixed wall
time: steps x SECONDS, as long as a step's compute stays under SECONDS (a tiny model's step is ~0.05 s here).
"""

from __future__ import annotations

import time

from transformers import TrainerCallback


class PacedSteps(TrainerCallback):
    SECONDS = 0.25

    def __init__(self) -> None:
        self.last: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if self.last is not None and now - self.last < self.SECONDS:
            time.sleep(self.SECONDS - (now - self.last))
        self.last = time.monotonic()
