"""A `training.callbacks` entry that makes training fail at step 2, on the node (the login checks cannot see it): the
chain tests' broken training."""

from __future__ import annotations

from transformers import TrainerCallback


class FailAtStep(TrainerCallback):
    STEP = 2

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.STEP:
            raise RuntimeError(f"failing on purpose at step {state.global_step} (tests/failing_step.py)")
