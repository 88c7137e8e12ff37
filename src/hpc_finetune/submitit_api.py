"""Every use of submitit's private (underscore) API, in one place.

submitit keeps the job folder, the pickles and the state for us, but three things we need are private, and so are
the module names our job scripts run. An upgrade of submitit may change any of them without notice:
tests/test_submitit_api.py checks each one (signature, and behaviour where cheap) against the installed submitit and
fails loudly, and pyproject.toml pins the range those tests passed on (``TESTED_RANGE``).

- ``SlurmExecutor._make_submission_file_text(command, uid)``: overridden so that sbatch gets our rendered script,
  byte for byte;
- ``LocalExecutor._submit_command(command)``: overridden so that the local "scheduler" runs our rendered script (in
  its own session) instead of submitit's own controller command; it returns a ``LocalJob(folder, job_id, tasks,
  process)``;
- ``submitit.slurm.slurm._parse_node_list``: a Slurm node list (``node[1-2]``) where ``scontrol`` cannot be run;
- the modules the job scripts run: ``submitit.core._submit`` (each task) and ``submitit.local._local`` (the local
  controller).

Login-light: submitit is imported inside the functions (the node program imports this module too).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable

TESTED_RANGE = ">=1.5.4,<1.6"  # keep in step with pyproject.toml's dependency
TASK_MODULE = "submitit.core._submit"  # python -m TASK_MODULE JOBS_DIR: one task of the job (unpickles the program)
LOCAL_CONTROLLER_MODULE = "submitit.local._local"  # python -m ...: the local controller (time limit, signals)


def parse_node_list(nodelist: str) -> list[str]:
    """Host names of a Slurm node list, the way submitit reads them (``node[1-2],gpu7`` -> node1, node2, gpu7)."""
    from submitit.slurm.slurm import _parse_node_list

    return list(_parse_node_list(nodelist))


def script_slurm_executor() -> type:
    """A ``submitit.SlurmExecutor`` whose sbatch file is ``executor.script_text`` (our rendered job script)."""
    import submitit

    class ScriptSlurmExecutor(submitit.SlurmExecutor):
        script_text = ""

        def _make_submission_file_text(self, command: str, uid: str) -> str:  # noqa: ARG002
            return self.script_text

    return ScriptSlurmExecutor


def script_local_executor(start: Callable[[Path, Path], subprocess.Popen]) -> type:
    """A ``submitit.LocalExecutor`` that starts ``executor.script_path`` with ``start(jobs_folder, script_path)``
    (which returns the running process) instead of submitit's own controller command."""
    import submitit
    from submitit.local.local import LocalJob

    class ScriptLocalExecutor(submitit.LocalExecutor):
        script_path: Path

        def _submit_command(self, command: str) -> Any:  # noqa: ARG002 - the script holds the command
            process = start(Path(self.folder), self.script_path)
            return LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=[0])

    return ScriptLocalExecutor
