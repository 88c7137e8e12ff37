"""`hpc-finetune eval RUN --submit`: the evaluation as a job of its own on the run's cluster (the node side).

A one-node, one-process job (one GPU if the run had GPUs, else none) that runs
``python -m hpc_finetune.train.evaluate EVAL_RUN_DIR/run.yaml --model MODEL --out RUN_DIR/eval ...``. It is a run
of its own (``RUN-eval``, recorded like any other), so `status`, `logs` and `cancel` follow it; its results land in
the evaluated run's ``eval/`` folder, where `report` finds them. The job is rendered and submitted by
runs.submit_eval_run.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class EvalProgram:
    """Pickled by submitit at submit time; called once, in the job's only task."""

    argv: list[str] = field(default_factory=list)
    python: str = ""

    def command(self) -> list[str]:
        return [self.python or sys.executable, "-u", "-m", "hpc_finetune.train.evaluate", *self.argv]

    def __call__(self) -> dict:
        cmd = self.command()
        print(f"hpc-finetune eval job: {shlex.join(cmd)}", flush=True)
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            raise RuntimeError(f"eval exited with status {rc}")
        return {"returncode": rc}
