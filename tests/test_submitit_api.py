"""submitit's private API, which hpc_finetune/submitit_api.py uses, is still there and still behaves as we rely on.

A submitit upgrade that removes or changes any of it fails here, by name, instead of in a user's first submit."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_finetune import submitit_api

ROOT = Path(__file__).resolve().parents[1]


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_installed_submitit_is_in_the_pinned_range():
    from packaging.specifiers import SpecifierSet

    pin = re.search(r'"submitit([^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pin == submitit_api.TESTED_RANGE, "pyproject.toml's submitit pin and submitit_api.TESTED_RANGE differ"
    version = importlib.metadata.version("submitit")
    assert version in SpecifierSet(pin), f"submitit {version} is outside the tested range {pin}: rerun these tests " \
                                         "and move the pin"


def test_make_submission_file_text_is_what_slurm_submission_writes():
    import submitit
    from submitit.core import core

    assert _params(submitit.SlurmExecutor._make_submission_file_text) == ["self", "command", "uid"]
    # the sbatch file is exactly what this method returns (our override then hands sbatch our script)
    source = inspect.getsource(core.PicklingExecutor._submit_command)
    assert "f.write(self._make_submission_file_text(command, tmp_uuid))" in source
    executor = submitit_api.script_slurm_executor()(folder="/tmp/unused-hpcft")
    executor.script_text = "#!/bin/bash\n#SBATCH --nodes=1\n"
    assert executor._make_submission_file_text("cmd", "uid") == executor.script_text


def test_local_submit_command_and_local_job():
    import submitit
    from submitit.core import core
    from submitit.local.local import LocalJob

    assert _params(submitit.LocalExecutor._submit_command) == ["self", "command"]
    assert "self._submit_command(" in inspect.getsource(core.PicklingExecutor._internal_process_submissions)
    assert _params(LocalJob.__init__) == ["self", "folder", "job_id", "tasks", "process"]


def test_local_executor_runs_our_script(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho ran > \"$1\"\n")
    done = tmp_path / "ran"

    def start(jobs: Path, path: Path) -> subprocess.Popen:
        return subprocess.Popen(["bash", str(path), str(done)])

    cls = submitit_api.script_local_executor(start)
    executor = cls(folder=tmp_path / "jobs")
    executor.script_path = script
    job = executor._submit_command("ignored")
    job._process.wait(timeout=60)
    assert job.job_id == str(job._process.pid)
    assert done.read_text() == "ran\n"


@pytest.mark.parametrize("nodelist, hosts", [
    ("node[1-2]", ["node1", "node2"]),
    ("gpu7", ["gpu7"]),
    ("a[01-02,05],b3", ["a01", "a02", "a05", "b3"]),
])
def test_parse_node_list(nodelist, hosts):
    from submitit.slurm.slurm import _parse_node_list

    assert _params(_parse_node_list) == ["node_list"]
    assert submitit_api.parse_node_list(nodelist) == hosts


def test_the_modules_job_scripts_run_exist():
    for name in (submitit_api.TASK_MODULE, submitit_api.LOCAL_CONTROLLER_MODULE):
        assert importlib.util.find_spec(name) is not None, name
    out = subprocess.run([sys.executable, "-m", submitit_api.TASK_MODULE, "--help"], capture_output=True, text=True,
                         timeout=120)
    assert "folder" in (out.stdout + out.stderr).lower()


def test_no_other_module_uses_submitit_private_names():
    private = re.compile(r"_make_submission_file_text|_submit_command|_parse_node_list|submitit\.\w+\._\w+")
    offenders = []
    for path in (ROOT / "src" / "hpc_finetune").rglob("*.py"):
        if path.name != "submitit_api.py" and private.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    for path in (ROOT / "templates").rglob("*.j2"):
        if private.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
