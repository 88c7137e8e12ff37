"""A `training.callbacks` entry that makes training fail at step 2, on the node (the login checks cannot see it): the
chain tests' broken training."""

from __future__ import annotations

from transformers import TrainerCallback


class FailAtStep(TrainerCallback):
    STEP = 2

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.STEP:
            raise RuntimeError(f"failing on purpose at step {state.global_step} (tests/failing_step.py)")


class FailOnce(TrainerCallback):
    """Fails at step 2 the first time (leaving a marker in the output folder); a requeued job then trains through."""

    def on_step_end(self, args, state, control, **kwargs):
        from pathlib import Path

        marker = Path(args.output_dir) / "failed-once"
        if state.global_step >= 2 and not marker.exists():
            marker.write_text("1\n")
            raise RuntimeError("failing once on purpose (tests/failing_step.py)")
