"""Shared fixtures: an isolated home per test, the demo assets, and the real dev cluster (session-wide)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def have_training_stack() -> bool:
    try:
        import importlib.util

        return all(importlib.util.find_spec(m) for m in ("torch", "transformers", "trl", "peft", "datasets"))
    except Exception:
        return False


def cli(*args: str, env: dict | None = None, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process, as a user would from a new shell."""
    proc = subprocess.run([PY, "-m", "hpc_finetune", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hpc-finetune {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """HOME, the run index and the shared roots all under tmp_path."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("HPC_FINETUNE_HOME", str(h / "state"))
    monkeypatch.setenv("HPCFT_TOKENIZED_CACHE", str(tmp_path / "tokcache"))
    monkeypatch.delenv("HPC_FINETUNE_CLUSTERS", raising=False)
    monkeypatch.delenv("HPC_FINETUNE_CLUSTER", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return h


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    if not have_training_stack():
        pytest.skip("training stack not installed (pip install -e '.[train]')")
    from hpc_finetune.train.assets import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root, size="tiny", samples=400)
    return root


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory):
    """The real two-node Slurm of hpc/devcluster, started once for the session and stopped after it."""
    if os.geteuid() != 0:
        pytest.skip("the dev cluster needs root (network namespaces, mknod)")
    state = Path("/tmp/hpcft-devcluster-tests")
    shared = tmp_path_factory.mktemp("shared")
    subprocess.run([str(REPO / "hpc/devcluster/down.sh"), "--state", str(state)], capture_output=True)
    up = subprocess.run([str(REPO / "hpc/devcluster/up.sh"), "--nodes", "2", "--state", str(state)],
                        capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        logs = "".join(p.read_text()[-2000:] for p in (state / "log").glob("*.log")) if state.exists() else ""
        pytest.fail(f"dev cluster did not start:\n{up.stdout}\n{up.stderr}\n{logs}")
    old = {k: os.environ.get(k) for k in ("SLURM_CONF", "HPCFT_DEVCLUSTER_SHARED")}
    os.environ["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
    os.environ["HPCFT_DEVCLUSTER_SHARED"] = str(shared)
    yield {"state": state, "shared": shared, "slurm_conf": os.environ["SLURM_CONF"]}
    subprocess.run([str(REPO / "hpc/devcluster/down.sh"), "--state", str(state)], capture_output=True)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(shared, ignore_errors=True)
