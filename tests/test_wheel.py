"""Templates and profiles ship inside the wheel: install it into a fresh venv and render a script there."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_renders_from_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("hpc_finetune-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: w\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n")
    env = dict(os.environ, HOME=str(tmp_path), USER="alice", HPC_FINETUNE_HOME=str(tmp_path / "state"))
    out = subprocess.run([str(env_dir / "bin" / "hpc-finetune"), "render", "--cluster", "a100-example", str(cfg)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --gres=gpu:a100:4" in out.stdout
    where = subprocess.run([str(py), "-c", "import hpc_finetune.resources as r; print(r.data_dir('templates'))"],
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert "site-packages/hpc_finetune/_data/templates" in where
    compat = subprocess.run([str(py), "-c", "import hpc_finetune.job.launch as j, hpc_finetune.launch as old; "
                             "assert old is j and 'site-packages' in j.__file__"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert compat.returncode == 0, compat.stderr  # the compute-side package and the old import path ship
    listed = subprocess.run([str(env_dir / "bin" / "hpc-finetune"), "clusters"], capture_output=True, text=True,
                            env=env, cwd=tmp_path).stdout
    assert "devcluster" in listed and "local" in listed
