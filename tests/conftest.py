"""Shared fixtures: an isolated home per test, the demo assets, and the real dev cluster (session-wide)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
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


def wandb_offline_history(run_file: Path) -> tuple[str, list[int]]:
    """(run id, logged train/global_step values) of one offline `run-ID.wandb` file, read without the network.

    The file is wandb's transaction log (LevelDB log framing: 32 KiB blocks, 7-byte record headers) of protobuf
    records; wandb 0.31 has no Python reader, so the framing is undone here and wandb's own protobuf parses them.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a wandb transaction log"
    pos, block, buf = 7, 32768, b""
    run_id, steps = "", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST piece of a record
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            kind_name = rec.WhichOneof("record_type")
            if kind_name == "run":
                run_id = rec.run.run_id
            elif kind_name == "history":
                items = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
                if "train/global_step" in items and "train/loss" in items:
                    steps.append(int(json.loads(items["train/global_step"])))
    return run_id, steps


# --- the dev cluster through the real CLI, as a user in a new shell would drive it

def status_of(run_id: str) -> dict:
    rows = json.loads(cli("status", run_id, "--json", check=True).stdout)
    return rows[0]


def wait_state(run_id: str, states: set[str], timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        row = status_of(run_id)
        seen.append(row["state"])
        if row["state"] in states:
            return row
        time.sleep(1.5)
    raise AssertionError(f"{run_id} never reached {states}; states seen: {seen[-5:]}")


def submit(*args: str, cluster: str = "devcluster") -> str:
    out = cli("submit", "--cluster", cluster, *args, check=True).stdout
    return re.search(r"submitted run (\S+) as job (\d+)", out).group(1)


def log_text(run_id: str, task: int = 0) -> str:
    return cli("logs", run_id, "--task", str(task), check=True).stdout


def wait_for(what: str, predicate, timeout: float = 300, every: float = 1.0):
    """The first truthy value of ``predicate()``, polled every ``every`` seconds; an AssertionError after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def profile_with(tmp_path: Path, monkeypatch, name: str, extra: str) -> str:
    """The devcluster profile with the settings in ``extra`` (YAML) replacing or adding to its own, as a site's own
    profile file found by $HPC_FINETUNE_CLUSTERS (profiles refuse duplicate keys, so the settings are merged)."""
    import yaml

    clusters = tmp_path / "clusters"
    clusters.mkdir(exist_ok=True)
    profile = yaml.safe_load((Path(__file__).resolve().parents[1] / "clusters" / "devcluster.yaml").read_text())
    profile.update(yaml.safe_load(extra) or {})
    (clusters / f"{name}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    monkeypatch.setenv("HPC_FINETUNE_CLUSTERS", str(clusters))
    return name


def recorded_run(root: Path, run_id: str, *, state: str = "completed", segments: int = 1, gpus: int = 4) -> Path:
    """A run directory with record.json, in the index of the current HPC_FINETUNE_HOME, as `submit` leaves it
    (without a job): for the commands that read what a run left on disk (`report`, `sync`, `eval`)."""
    from hpc_finetune.records import Registry, RunRecord, Segment

    run_dir = root / run_id
    (run_dir / "output").mkdir(parents=True)
    rec = RunRecord(run_id=run_id, name=run_id, cluster="devcluster", scheduler="slurm", run_dir=str(run_dir),
                    output_dir=str(run_dir / "output"), created=time.time(), nodes=1, gpus_per_node=gpus,
                    processes_per_node=gpus, time_seconds=600, state=state,
                    segments=[Segment(job_id=str(100 + i), started_by="submit" if i == 0 else "auto-requeue",
                                      submitted=time.time(), state="completed" if i == segments - 1 else "requeued",
                                      elapsed=600) for i in range(segments)])
    rec.save()
    registry = Registry()
    registry.upsert(rec)
    registry.close()
    return run_dir
