"""A chained stage's job (the node side): ``python -u -m <the stage's command>`` for the run it follows.

Pickled by submitit at submit time (or started by the local runner); called once, in the job's only task. The
command is built here, at run time, from the stage registry (campaigns/stages.py): a stage after ``select`` reads
the chosen member from ``CAMPAIGN_DIR/selection.json`` only now, when the selector has written it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SELECTION = "selection.json"  # the selector (job/select.py) writes it into the campaign folder


@dataclass
class StageProgram:
    stage: str
    run_dir: str = ""  # the training run it follows ("" with `selected`: read selection.json)
    output_dir: str = ""
    chain: list[str] = field(default_factory=list)
    campaign_dir: str = ""
    selected: bool = False  # follows the member the selector chose
    python: str = ""

    def target(self):
        from hpc_finetune.campaigns.stages import Target

        run_dir, output_dir = self.run_dir, self.output_dir
        if self.selected:
            path = Path(self.campaign_dir) / SELECTION
            try:
                choice = json.loads(path.read_text())
                run_dir, output_dir = choice["run_dir"], choice["output_dir"]
            except (OSError, ValueError, KeyError) as exc:
                raise RuntimeError(f"no usable selection in {path} ({exc}): did the select stage run?") from None
            print(f"hpc-finetune {self.stage}: following {choice.get('run_id', run_dir)}, the member the select "
                  f"stage chose ({choice.get('metric')} {choice.get('value')})", flush=True)
        return Target(run_dir=Path(run_dir), output_dir=Path(output_dir), chain=tuple(self.chain),
                      campaign_dir=Path(self.campaign_dir) if self.campaign_dir else None)

    def command(self, target: Optional[object] = None) -> list[str]:
        from hpc_finetune.campaigns.stages import STAGES

        return [self.python or sys.executable, "-u", "-m", *STAGES[self.stage].command(target or self.target())]

    def __call__(self) -> dict:
        cmd = self.command()
        print(f"hpc-finetune {self.stage} job: {shlex.join(cmd)}", flush=True)
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            raise RuntimeError(f"{self.stage} exited with status {rc}")
        return {"returncode": rc}
