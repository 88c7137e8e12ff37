"""The GPU acceptance run (bench/gpu_acceptance.sh), checked as deep as a CPU allows.

Its cases go through the same loading, resolving, pre-flight and rendering as `submit`; its table arithmetic is
checked on synthetic run files and on a real (CPU, tiny) run submitted through the same driver function; its
no-GPU exit and its wheel-folder guard run for real. What only a GPU shows (the numbers) it cannot check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_acceptance", REPO / "bench" / "gpu_acceptance.py")
ga = importlib.util.module_from_spec(spec)
sys.modules["gpu_acceptance"] = ga
spec.loader.exec_module(ga)

CASE = {c.name: c for c in ga.CASES}
H100 = "NVIDIA H100 80GB HBM3"


def fake_demo(root: Path) -> Path:
    """The demo folder as `check` and `plan` see it: the medium model's config.json, files where weights and the
    tokenizer go, and real text data. (The ~190M weights themselves are built on the GPU machine.)"""
    from hpc_finetune.train.assets import SIZES

    hidden, layers, heads, kv, inter = SIZES[ga.MODEL_SIZE]
    model = root / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "vocab_size": 512, "tie_word_embeddings": False,
        "max_position_embeddings": 1024}))
    (model / "model.safetensors").write_bytes(b"")
    (model / "tokenizer.json").write_text("{}")
    (root / "text.jsonl").write_text("".join(json.dumps({"content": f"sample {i}"}) + "\n" for i in range(50)))
    return root


@pytest.fixture
def gpu_setup(home, tmp_path):
    demo = fake_demo(tmp_path / "demo")
    profile = ga.write_profile(tmp_path / "work", gpus=1, gpu_memory_gb=79.6, cpus=16)
    return demo, profile, tmp_path


def test_case_list_covers_the_acceptance_modes():
    assert list(CASE) == ["lora-bf16", "flash-attn", "qlora-nf4", "full-fp32-master", "fsdp-lora", "zero3-lora"]


@pytest.mark.parametrize("name", list(CASE))
def test_each_case_loads_resolves_passes_check_and_renders(gpu_setup, name):
    from hpc_finetune.check import raise_problems
    from hpc_finetune.job.launch import NodeInfo
    from hpc_finetune.runs import prepare_at
    from hpc_finetune.profile import find_profile
    from hpc_finetune.render import launch_files
    from hpc_finetune.runconfig import load_run_config

    demo, profile_path, tmp = gpu_setup
    run_yaml = ga.write_case(CASE[name], demo, tmp / "cases", time_s=95)
    cfg = load_run_config(run_yaml)
    profile = find_profile(str(profile_path))  # as `submit --cluster PATH` finds it
    assert profile.scheduler == "local" and profile.gpus_per_node == 1 and profile.max_requeues == 0
    run_dir = tmp / "runs" / name
    raise_problems(cfg, profile, run_dir, config_source=str(run_yaml))  # submit's pre-flight: no problem
    prep = prepare_at(profile, cfg, run_dir, source=str(run_yaml))
    spec, cfg = prep.spec, prep.cfg
    assert (spec.nodes, spec.gpus_per_node, spec.world_size, spec.time_seconds) == (1, 1, 1, 95)
    assert cfg.training.precision == "bf16" and cfg.logging.wandb == "disabled"
    assert cfg.model.path == str(demo / "model") and cfg.data.train_file == str(demo / "text.jsonl")
    files = launch_files(cfg, spec)
    cmd = prep.program.command(NodeInfo(0, 1, "gpu", "gpu", "127.0.0.1", 20001, "1"))
    if name in ("fsdp-lora", "zero3-lora"):
        from accelerate.commands.config.config_args import load_config_from_file

        run_dir.mkdir(parents=True)
        for fname, text in files.items():
            (run_dir / fname).write_text(text)
        acc = load_config_from_file(str(run_dir / "accelerate_config.yaml"))  # accelerate's own loader
        assert acc.num_processes == 1 and acc.num_machines == 1
        assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and cmd[cmd.index("--num_processes") + 1] == "1"
        if name == "fsdp-lora":
            assert str(acc.distributed_type) in ("FSDP", "DistributedType.FSDP")
            fc = acc.fsdp_config
            if fc.get("fsdp_version", 1) == 2:  # per-parameter sharding: LoRA needs nothing more
                assert fc["fsdp_reshard_after_forward"] is True  # full shard
            else:
                assert fc["fsdp_sharding_strategy"] == "FULL_SHARD"
                assert fc["fsdp_use_orig_params"] is True  # LoRA: frozen and trainable in one flat param
        else:
            assert str(acc.distributed_type) in ("DEEPSPEED", "DistributedType.DEEPSPEED")
            ds = json.loads(files["deepspeed_config.json"])
            assert ds["zero_optimization"]["stage"] == 3 and acc.deepspeed_config["zero3_init_flag"] is True
    else:
        assert files == {}  # one process, no launcher: plain python, as a user's single-GPU run
        assert cmd[1:3] == ["-m", "hpc_finetune.train"]
    expected = {"lora-bf16": ("lora", "bfloat16"), "qlora-nf4": ("qlora", "bfloat16"),
                "fsdp-lora": ("lora", "bfloat16"), "zero3-lora": ("lora", "bfloat16"),
                "flash-attn": ("lora", "bfloat16"), "full-fp32-master": ("full", "float32")}
    assert (cfg.method, cfg.load_dtype) == expected[name]
    assert cfg.model.attn_implementation == ("flash_attention_2" if name == "flash-attn" else "sdpa")
    from hpc_finetune.plan import inputs_from_run

    inputs = inputs_from_run(cfg, spec, profile)  # what `plan` predicts from: fp32 master weights for full
    assert inputs.load_dtype == ("float32" if name == "full-fp32-master" else "bfloat16")
    assert inputs.strategy == cfg.launch.strategy and inputs.cuda and inputs.gpu_memory_gb == 79.6
    total, overhead = ga.plan_gb(run_yaml, profile_path)
    assert overhead == 1.0 and 1.0 < total < 79.6


@pytest.mark.train
def test_qlora_case_builds_nf4_with_bf16_storage(gpu_setup):
    import torch

    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.train.model import quantization_config

    demo, _, tmp = gpu_setup
    cfg = load_run_config(ga.write_case(CASE["qlora-nf4"], demo, tmp / "cases", time_s=60))
    q = quantization_config(cfg)  # the object the training core hands to from_pretrained
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_quant_storage == torch.bfloat16 and q.bnb_4bit_compute_dtype == torch.bfloat16


@pytest.mark.train
def test_medium_preset_is_a_100_to_300m_llama_and_plan_counts_it_exactly(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpc_finetune.plan import ModelShape

    demo = fake_demo(tmp_path / "demo")
    config = json.loads((demo / "model" / "config.json").read_text())
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "architectures"}))
    n = sum(p.numel() for p in model.parameters())
    assert 100e6 <= n <= 300e6
    assert ModelShape.from_model_dir(demo / "model").params == n


def synthetic_run(root: Path, *, summary: dict | None, progress: list[dict], log: str) -> Path:
    run_dir = root / "run"
    (run_dir / "output").mkdir(parents=True)
    (run_dir / "jobs").mkdir()
    if summary is not None:
        (run_dir / "output" / "summary.json").write_text(json.dumps(summary))
    (run_dir / "output" / "progress.jsonl").write_text("".join(json.dumps(p) + "\n" for p in progress)
                                                      + '{"step": 99, "lo')  # a line cut by a killed job
    (run_dir / "jobs" / "4242_0_log.out").write_text(log)
    return run_dir


def test_row_arithmetic_from_run_files(tmp_path):
    t0 = 1000.0
    progress = [{"step": s, "loss": 6.0 - 0.05 * s, "time": t0 + 0.1 * s} for s in range(5, 65, 5)]
    summary = {"step": 60, "max_steps": 60, "tokens_per_step": 16384, "tokens_per_s": 50000.0,
               "cuda_max_memory_allocated_gb": 12.5, "cuda_device": H100, "attention": "sdpa"}
    run_dir = synthetic_run(tmp_path, summary=summary, progress=progress,
                            log="loading\nhpc-finetune train: warning: attention: flash_attention_2 asked, but the "
                                "flash-attn package is not installed\n")
    peak, peak_text = ga.peak_flops(H100)
    row = ga.collect("flash-attn", run_dir, params=190_000_000, peak=peak, plan=(15.0, 1.0), status="completed",
                     seconds=42.0)
    tps = 55 * 16384 / 5.5  # steps 5 -> 60 in 5.5 s: start-up and final save left out
    assert row["tokens_per_s"] == pytest.approx(tps, abs=0.1)
    assert row["mfu"] == pytest.approx(6 * 190e6 * tps / 989e12, abs=1e-4)
    assert (row["steps"], row["max_steps"], row["first_loss"], row["last_loss"]) == (60, 60, 5.75, 3.0)
    assert row["loss_falling"] is True and row["status"] == "completed"
    gb = 12.5  # the core writes decimal GB, the unit plan uses
    assert row["max_mem_gb"] == pytest.approx(gb, abs=1e-3) and row["mem_ratio"] == pytest.approx(gb / 14.0, abs=0.01)
    assert row["attention"] == "sdpa (flash_attention_2 asked, but the flash-attn package is not installed)"
    table = ga.render_table([row], card=H100, peak_text=peak_text, params=190_000_000)
    assert "H100 989 TFLOP/s dense bf16" in table and "190.0M-parameter" in table
    assert f"| flash-attn | completed | 60/60 | 5.750 | 3.000 | yes | {tps:,.0f} | " \
           f"{6 * 190e6 * tps / 989e12:.1%} | 12.50 | 15.00 | 0.89 |" in table
    assert ga.passed([row])


def test_missing_memory_field_reads_na_and_failures_say_why(tmp_path):
    progress = [{"step": 5, "loss": 6.0, "time": 1.0}, {"step": 10, "loss": 5.99, "time": 2.0}]
    ok = ga.collect("lora-bf16", synthetic_run(tmp_path / "a", summary={"step": 10, "max_steps": 10,
                                                                       "tokens_per_step": 100}, progress=progress,
                                               log="no attention line here"),
                    params=10, peak=None, plan=(3.0, 1.0), status="completed", seconds=1)
    assert ok["max_mem_gb"] is None and ok["mem_ratio"] is None and ok["mfu"] is None
    assert ok["attention"] == "unknown" and ok["loss_falling"] is False  # 6.0 -> 5.99 is not 5% down
    table = ga.render_table([ok], card="cpu", peak_text="none", params=10)
    assert "| lora-bf16 | completed | 10/10 | 6.000 | 5.990 | no | 500 | n/a | n/a | 3.00 | n/a | unknown |" in table
    assert not ga.passed([ok])
    log = ("Traceback (most recent call last):\n  File \"x.py\", line 1\ntorch.OutOfMemoryError: CUDA out of memory. "
           "Tried to allocate 2.00 GiB\nsubmitit ERROR (2026-11-26) - Submitted job triggered an exception\n"
           "Traceback (most recent call last):\nRuntimeError: training on gpu1 exited with status 1\n")
    bad = ga.collect("full-fp32-master", synthetic_run(tmp_path / "b", summary=None, progress=[], log=log),
                     params=10, peak=989e12, plan=(3.0, 1.0), status="failed (exit 1)", seconds=5)
    assert bad["status"] == "failed (exit 1): torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert bad["steps"] is None and bad["tokens_per_s"] is None
    limited = synthetic_run(tmp_path / "c", summary=None, progress=progress, log="")
    (limited / "output" / "interrupted.json").write_text(json.dumps({"step": 10}))
    row = ga.collect("zero3-lora", limited, params=10, peak=None, plan=None, status="failed (exit 1)", seconds=70)
    assert row["status"] == "stopped by its time limit at step 10"


def test_peaks_budgets_and_unavailable_packages(tmp_path):
    assert ga.peak_flops(H100)[0] == 989e12 and ga.peak_flops("NVIDIA H200")[0] == 989e12
    assert ga.peak_flops("NVIDIA H100 PCIe")[0] == 756e12 and ga.peak_flops("NVIDIA A100-SXM4-80GB")[0] == 312e12
    assert ga.peak_flops("Tesla T4") == (None, "unknown card 'Tesla T4': no MFU")
    assert ga.case_budget(400, 6, 150) == 66 and ga.case_budget(400, 1, 150) == 150
    probe = {"imports": {m: "ok" for m in ga.IMPORTS}}
    probe["imports"]["deepspeed"] = "ModuleNotFoundError: No module named 'deepspeed'"
    (tmp_path / "deepspeed-unavailable.txt").write_text("build from deepspeed-0.19.8.tar.gz failed: error: x\n")
    assert ga.unavailable(CASE["zero3-lora"], probe, tmp_path) == (
        "deepspeed unavailable: build from deepspeed-0.19.8.tar.gz failed: error: x; "
        "ModuleNotFoundError: No module named 'deepspeed'")
    assert all(ga.unavailable(CASE[n], probe, tmp_path) is None for n in CASE if n != "zero3-lora")
    probe["imports"]["trl"] = "ImportError: cannot import name 'X' from 'transformers'"
    assert ga.unavailable(CASE["lora-bf16"], probe, tmp_path).startswith("trl unavailable: ImportError")


def test_requirement_check_names_what_is_needed():
    reqs = ["pyarrow>=24.0.0", "dill<0.4.2,>=0.3.0", "fsspec[http]<=2026.9.0", "wandb; extra == 'dev'",
            "pywin32; sys_platform == 'win32'", "xxhash"]
    assert ga.check_requirements("datasets", "5.2.0", reqs, {"pyarrow": "21.0.0", "dill": "0.4.1",
                                                             "fsspec": "2026.10.0"}) == [
        "datasets 5.2.0 needs pyarrow>=24.0.0: found 21.0.0",
        "datasets 5.2.0 needs fsspec[http]<=2026.9.0: found 2026.10.0",
        "datasets 5.2.0 needs xxhash: not installed"]
    import importlib.metadata as md

    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}
    trl = md.distribution("trl")  # the stack these tests run on satisfies itself, and our own extras
    assert ga.check_requirements("trl", trl.version, trl.requires or [], installed) == []
    ours = ga.project_requirements()
    assert any(r.startswith("trl") for r in ours) and any(r.startswith("deepspeed") for r in ours)
    assert not any(r.startswith("wandb") for r in ours)  # the acceptance runs disable it: not carried
    assert ga.check_requirements("hpc-finetune", "x", ours, installed) == []


def test_installed_versions_are_the_ones_an_import_finds(tmp_path):
    """Wheels installed with --target sit ahead of the environment on the path: their versions are the ones used."""
    info = tmp_path / "trl-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trl\nVersion: 0.0.1\n")
    import importlib.metadata as md

    assert ga.installed_versions([str(tmp_path)] + sys.path)["trl"] == "0.0.1"
    assert ga.installed_versions(sys.path + [str(tmp_path)])["trl"] == md.version("trl")


def test_no_gpu_is_one_clean_line_and_exit_zero(tmp_path):
    env = dict(os.environ, PY=sys.executable, GPU_ACCEPTANCE_WORK=str(tmp_path / "work"), GPU_SITE=str(tmp_path / "s"))
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_acceptance.sh")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "gpu_acceptance: no GPU (torch.cuda.is_available() is False): nothing run\n"
    assert proc.stderr == ""
    assert not (tmp_path / "work").exists() and not (tmp_path / "s").exists()  # nothing installed, nothing built
    no_torch = Path("/usr/bin/python3")  # the system Python: no torch at all
    if no_torch.exists() and subprocess.run([str(no_torch), "-c", "import torch"], capture_output=True).returncode:
        proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_acceptance.sh")], capture_output=True, text=True,
                              env=dict(env, PY=str(no_torch)), timeout=120)
        assert proc.returncode == 0
        assert proc.stdout == "gpu_acceptance: no GPU (torch not importable: ModuleNotFoundError): nothing run\n"


def test_wheels_dry_run_lists_pins_and_the_guard_refuses_over_64_mib(tmp_path):
    script = str(REPO / "bench" / "gpu_wheels.sh")
    proc = subprocess.run(["bash", script, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = dict(line.strip().split("==") for line in proc.stdout.splitlines()[1:])
    env_yml = (REPO / "hpc" / "environment.yml").read_text()
    for name in ("trl", "datasets", "bitsandbytes", "submitit", "deepspeed"):
        assert f"- {name}=={listed[name]}\n" in env_yml  # the versions tested together
    assert {"dill", "multiprocess", "hjson", "pydantic", "pydantic-core"} <= set(listed)
    assert not {"torch", "transformers", "wandb", "pyarrow"} & set(listed)  # there already, or not needed
    big, small = tmp_path / "big", tmp_path / "small"
    big.mkdir()
    small.mkdir()
    with (big / "x.whl").open("wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: the guard counts the bytes that would travel
    (small / "y.whl").write_bytes(b"0" * 1024 * 1024)
    over = subprocess.run(["bash", script, "--check", str(big)], capture_output=True, text=True, timeout=60)
    assert over.returncode == 1 and "over the 64 MiB" in over.stderr and "65.0 MiB" in over.stdout
    under = subprocess.run(["bash", script, "--check", str(small)], capture_output=True, text=True, timeout=60)
    assert under.returncode == 0 and "1.0 MiB" in under.stdout
    ignored = subprocess.run(["git", "check-ignore", "-q", ".whl/trl-1.16.0-py3-none-any.whl"], cwd=REPO)
    assert ignored.returncode == 0  # wheels are never committed (and not counted twice as untracked files)


@pytest.mark.train
def test_cpu_rehearsal_runs_the_whole_driver(home, tmp_path):
    """`run --cpu-rehearsal`: probe, build, profile, plan, `submit --wait`, read-back and table, on this CPU."""
    work, out = tmp_path / "work", tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_acceptance.py"), "run", "--cpu-rehearsal",
                           "--cases", "lora-bf16", "--work", str(work), "--out", str(out)], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    result = json.loads((out / "gpu_acceptance.json").read_text())
    (row,) = result["rows"]
    assert row["status"] == "completed", proc.stdout + proc.stderr
    assert (row["steps"], row["max_steps"]) == (10, 10) and row["tokens_per_s"] > 0
    assert row["first_loss"] is not None and row["plan_gb"] > 0
    assert proc.returncode == (0 if ga.passed([row]) else 1)
    assert "| lora-bf16 | completed | 10/10 |" in proc.stdout
    assert "| lora-bf16 | completed | 10/10 |" in (out / "gpu_acceptance.md").read_text()
    assert result["probe"]["versions"]["trl"] and result["probe"]["imports"]["trl"] == "ok"


@pytest.mark.train
def test_a_case_over_its_budget_is_cancelled_and_its_processes_ended(home, demo_dir, tmp_path, monkeypatch):
    """`hpc-finetune cancel` of a local run leaves its trainer running (its own session); the driver ends it."""
    profile = ga.write_profile(tmp_path / "work", gpus=0, gpu_memory_gb=0, cpus=2)
    run_yaml = ga.write_case(CASE["lora-bf16"], demo_dir, tmp_path / "cases", 600, ga.REHEARSAL["overrides"])
    cfg = yaml.safe_load(run_yaml.read_text())
    cfg["training"]["max_steps"] = 100000
    run_yaml.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(ga, "GRACE_S", 0)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    status, run_dir, _ = ga.run_case(CASE["lora-bf16"], run_yaml, profile, 8, env, sys.executable)
    assert status == "timeout after 8 s" and run_dir is not None
    time.sleep(1)
    key = f"HPCFT_RUN_DIR={run_dir}".encode()
    assert [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _has_env(p, key)] == []


def _has_env(proc: Path, key: bytes) -> bool:
    try:
        return key in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
