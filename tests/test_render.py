"""Job scripts: golden files for every shipped profile at 1 and 2 nodes; quoting; render == submit.

Regenerate the golden files after an intended template change with:
    HPCFT_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_finetune.profile import load_profile_file
from hpc_finetune.render import launch_files, quote_vars
from hpc_finetune.resources import data_dir
from hpc_finetune.runconfig import load_run_config
from hpc_finetune.runs import prepare_at

GOLDEN = Path(__file__).parent / "golden"
RUN = "name: golden\nmodel: {path: /models/llama}\ndata: {train_file: /data/train.jsonl}\n"


def render_case(tmp_path, monkeypatch, profile_name: str, nodes: int, extra: str = "") -> str:
    monkeypatch.setenv("HOME", "/home/alice")
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("HPCFT_DEVCLUSTER_SHARED", raising=False)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(RUN + extra)
    cfg = load_run_config(cfg_path)
    cfg.resources.nodes = nodes
    profile = load_profile_file(data_dir("clusters") / f"{profile_name}.yaml")
    if profile.scheduler == "local":
        cfg.resources.nodes = 1
    from hpc_finetune.jobspec import runs_root

    prep = prepare_at(profile, cfg, runs_root(profile) / "golden", source=str(cfg_path))
    return prep.script.replace(sys.executable, "PYTHON")


CASES = [(p, n) for p in ("local", "devcluster", "a100-example") for n in (1, 2) if not (p == "local" and n == 2)]


@pytest.mark.parametrize("profile,nodes", CASES)
def test_golden(tmp_path, monkeypatch, profile, nodes):
    text = render_case(tmp_path, monkeypatch, profile, nodes)
    golden = GOLDEN / f"{profile}-{nodes}node.sh"
    if os.environ.get("HPCFT_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}: run with HPCFT_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_a100_script_reads_right(tmp_path, monkeypatch):
    text = render_case(tmp_path, monkeypatch, "a100-example", 2)
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:a100:4",
                 "#SBATCH --cpus-per-task=64", "#SBATCH --mem=480G", "#SBATCH --signal=USR2@300",
                 "#SBATCH --account=my-lab", "#SBATCH --mail-type=FAIL", "module purge", "module load cuda/12.4",
                 'eval "$(conda shell.bash hook)"', 'conda activate "/work/$USER/envs/hpc-finetune"',
                 'export TRITON_CACHE_DIR="$TMPDIR/triton"', 'export HF_HUB_OFFLINE="1"',
                 "srun --unbuffered --ntasks-per-node=1"]:
        assert line in text, line
    assert "HF_TOKEN" not in text and "WANDB_API_KEY" not in text


def test_bash_syntax_of_every_golden():
    for path in GOLDEN.glob("*.sh"):
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_quote_vars_keeps_only_variable_references():
    assert quote_vars("$TMPDIR/x") == '"$TMPDIR/x"'
    assert quote_vars("${TMPDIR:-/tmp}/y") == '"${TMPDIR:-/tmp}/y"'
    assert quote_vars("$(id)`id`\"\\") == '"\\$(id)\\`id\\`\\"\\\\"'


def test_injection_renders_as_literal(tmp_path, monkeypatch):
    """Hostile profile values reach the script as text; running the script's set-up part executes none of them."""
    marker = tmp_path / "pwned"
    site = tmp_path / "site.yaml"
    site.write_text(
        "scheduler: slurm\npartition: 'x; touch {m}'\naccount: '$(touch {m})'\nqos: '`touch {m}`'\n"
        "extra_env:\n  EVIL: '$(touch {m}); `touch {m}`'\n  EVIL2: \"'; touch {m}; '\"\n"
        "storage: {{shared_root: '{root}', node_local: '/tmp/$(touch {m})'}}\n"
        "caches: {{hf_home: '{{shared_root}}/hf;touch {m}'}}\n".format(m=marker, root=tmp_path / "shared"))
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text("name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n")
    cfg = load_run_config(cfg_path)
    profile = load_profile_file(site)
    prep = prepare_at(profile, cfg, tmp_path / "shared" / "run", source="run.yaml")
    script = prep.script
    assert f"#SBATCH --partition='x; touch {marker}'" in script
    setup = script.split("# --- launch")[0] + "\nprintenv EVIL EVIL2 HF_HOME TRITON_CACHE_DIR\n"
    out = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), "a profile value ran as shell code"
    assert f"$(touch {marker}); `touch {marker}`" in out.stdout
    assert f"'; touch {marker}; '" in out.stdout


def test_launch_configs_for_each_strategy(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    for strategy in ("ddp", "deepspeed", "fsdp"):
        extra = f"launch: {{strategy: {strategy}}}\n"
        cfg_path = tmp_path / f"{strategy}.yaml"
        cfg_path.write_text(RUN + extra)
        cfg = load_run_config(cfg_path)
        cfg.resources.nodes = 2
        profile = load_profile_file(data_dir("clusters") / "a100-example.yaml")
        prep = prepare_at(profile, cfg, tmp_path / "runs" / strategy, source="x")
        files = launch_files(prep.cfg, prep.spec)
        assert "num_machines: 2" in files["accelerate_config.yaml"]
        assert "num_processes: 8" in files["accelerate_config.yaml"]
        assert ("deepspeed_config.json" in files) == (strategy == "deepspeed")


@pytest.mark.parametrize("gpus,cpus", [(4, 64), (2, 32), (0, 8)])
def test_srun_asks_the_jobs_cpus_explicitly(tmp_path, monkeypatch, gpus, cpus):
    """Slurm 22.05-23.02's srun does not read SLURM_CPUS_PER_TASK: without --cpus-per-task on the srun line a site may
    give each node's trainers one CPU. The step asks exactly what the job asked (#SBATCH --cpus-per-task)."""
    text = render_case(tmp_path, monkeypatch, "a100-example", 1, f"resources: {{gpus_per_node: {gpus}}}\n")
    header = next(ln for ln in text.splitlines() if ln.startswith("#SBATCH --cpus-per-task="))
    srun = next(ln for ln in text.splitlines() if ln.startswith("srun "))
    assert header == f"#SBATCH --cpus-per-task={cpus}"
    assert f" --cpus-per-task={cpus} " in srun


def test_profile_mail_settings_become_sbatch_lines(tmp_path, monkeypatch):
    from hpc_finetune.errors import UserError

    base = (data_dir("clusters") / "devcluster.yaml").read_text()
    (tmp_path / "site.yaml").write_text(base + "mail_user: alice+hpc@uni.example\nmail_type: END,FAIL\n")
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(RUN)
    prep = prepare_at(load_profile_file(tmp_path / "site.yaml"), load_run_config(cfg_path), tmp_path / "r",
                      source="x")
    assert "#SBATCH --mail-user=alice+hpc@uni.example\n#SBATCH --mail-type=END,FAIL\n" in prep.script
    for bad in ("mail_type: 'END\\ntouch /tmp/x'", "mail_user: 'a@b; rm -rf ~'", "mail_type: end"):
        (tmp_path / "bad.yaml").write_text(base + bad + "\n")
        with pytest.raises(UserError):
            load_profile_file(tmp_path / "bad.yaml")
