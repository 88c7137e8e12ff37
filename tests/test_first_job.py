"""The defects that would crash or mislead the first GPU job, each checked as deep as this CPU machine allows:
resolved configs, the SFTConfig the core builds, the loaded model, the devices a process sees, check's notes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli
from hpc_finetune import devices
from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import load_run_config

RUN = "name: t\nmodel: {path: /models/llama}\ndata: {train_file: /data/train.jsonl}\n"


def cfg_of(tmp_path: Path, *sets: str):
    path = tmp_path / "run.yaml"
    path.write_text(RUN)
    return load_run_config(path, list(sets))


# --- dtypes: one rule for the core and for plan --------------------------------------------------------------------
@pytest.mark.parametrize("sets,load,compute,storage", [
    (["method=full", "training.precision=bf16"], "float32", "bfloat16", None),  # fp32 master weights
    (["method=full", "training.precision=fp16"], "float32", "float16", None),  # GradScaler needs fp32 grads
    (["method=full", "launch.strategy=deepspeed"], "float32", "bfloat16", None),  # DeepSpeed casts, keeps master
    (["method=lora", "training.precision=bf16"], "bfloat16", "bfloat16", None),  # frozen base in 16 bit
    (["method=qlora"], "bfloat16", "bfloat16", "uint8"),
    (["method=qlora", "training.precision=fp16"], "float16", "float16", "uint8"),
    (["method=qlora", "launch.strategy=fsdp"], "bfloat16", "bfloat16", "bfloat16"),  # FSDP: floating, uniform
    (["method=qlora", "launch.strategy=deepspeed", "launch.zero_stage=3"], "bfloat16", "bfloat16", "bfloat16"),
    (["method=qlora", "launch.strategy=deepspeed", "launch.zero_stage=2"], "bfloat16", "bfloat16", "uint8"),
    (["method=qlora", "quantization.compute_dtype=float32"], "bfloat16", "float32", "uint8"),
    (["method=full", "model.dtype=bfloat16"], "bfloat16", "bfloat16", None),  # explicit: pure bf16 training
])
def test_dtype_rules(tmp_path, sets, load, compute, storage):
    """Loaded weights, 4-bit compute and 4-bit storage dtypes (storage: None where nothing is quantized)."""
    cfg = cfg_of(tmp_path, *sets)
    assert (cfg.load_dtype, cfg.compute_dtype) == (load, compute)
    if storage is not None:
        assert cfg.quant_storage_dtype == storage


@pytest.mark.parametrize("sets,field,words", [
    (["method=lora-8bit", "launch.strategy=fsdp"], "method", "8-bit LoRA cannot be sharded by FSDP"),
    (["method=lora-8bit", "launch.strategy=deepspeed", "launch.zero_stage=3"], "method", "DeepSpeed ZeRO-3"),
    (["method=qlora", "launch.strategy=fsdp", "quantization.quant_storage_dtype=uint8"],
     "quantization.quant_storage_dtype", "uint8"),
    (["method=qlora", "launch.strategy=fsdp", "quantization.quant_storage_dtype=float32", "model.dtype=bfloat16"],
     "quantization.quant_storage_dtype", "one dtype"),
    (["method=full", "model.dtype=float16", "training.precision=fp16"], "model.dtype", "GradScaler"),
])
def test_combinations_that_would_crash_on_the_gpu_are_refused(tmp_path, sets, field, words):
    with pytest.raises(UserError, match=words) as err:
        cfg_of(tmp_path, *sets)
    assert err.value.field == field


def test_check_refuses_8bit_lora_with_fsdp_in_one_line(home, tmp_path):
    (tmp_path / "run.yaml").write_text(RUN + "method: lora-8bit\nlaunch: {strategy: fsdp}\n")
    proc = cli("check", "--cluster", "a100-example", str(tmp_path / "run.yaml"), env=None)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "method: 8-bit LoRA cannot be sharded by FSDP" in lines[0], proc.stderr


@pytest.mark.train
def test_full_finetuning_trains_fp32_master_weights_under_bf16(home, demo_dir, tmp_path):
    """bf16 autocast with fp32 weights: the updated weights stay fp32 (bf16 weights would round small updates away)."""
    import torch

    from hpc_finetune.train.core import train
    from hpc_finetune.train.model import load_model, load_tokenizer

    cfg = load_run_config(demo_dir / "run.yaml", ["method=full", "training.precision=bf16", "training.max_steps=3",
                                                   "logging.wandb=disabled", f"output_dir={tmp_path / 'out'}"])
    model = load_model(cfg, load_tokenizer(cfg))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    lora = load_run_config(demo_dir / "run.yaml", ["method=lora", "training.precision=bf16"])
    assert {p.dtype for p in load_model(lora, load_tokenizer(lora)).parameters()} == {torch.bfloat16}
    assert train(cfg)["step"] == 3
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "final" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}


# --- one model across ranks: the Trainer arguments ----------------------------------------------------------------
@pytest.mark.train
@pytest.mark.parametrize("sets,expected", [
    (["launch.strategy=ddp"], {"use_cpu": True, "ddp_find_unused_parameters": False}),
    (["launch.strategy=ddp", "method=full"], {"use_cpu": True}),  # a PreTrainedModel: transformers decides
    (["launch.strategy=deepspeed", "launch.zero_stage=2"], {}),  # DeepSpeed's own engine, not accelerate's CPU mode
    (["launch.strategy=deepspeed", "launch.launcher=torchrun"], {"deepspeed": "RUN/deepspeed_config.json"}),
])
def test_cpu_processes_are_told_they_are_on_cpu(tmp_path, monkeypatch, sets, expected):
    """What makes two CPU processes one DDP job (accelerate's MULTI_CPU mode needs use_cpu; the multi-process runs in
    test_distributed.py prove the effect), and the SFTConfig built from it in one process."""
    from hpc_finetune.train.core import distribution_args, sft_config

    cfg = cfg_of(tmp_path, *sets)
    monkeypatch.setenv("HPCFT_RUN_DIR", "RUN")
    monkeypatch.setenv("HPCFT_DEEPSPEED_CONFIG", "RUN/deepspeed_config.json")  # what the node program sets
    monkeypatch.setenv("WORLD_SIZE", "2")
    got = distribution_args(cfg, tmp_path / "out", cuda=False)
    assert got == {"dataloader_pin_memory": False, "ddp_backend": "gloo", **expected}
    assert distribution_args(cfg, tmp_path / "out", cuda=True) == {
        k: v for k, v in expected.items() if k not in ("use_cpu",)}  # GPUs: accelerate's own MULTI_GPU detection
    monkeypatch.delenv("WORLD_SIZE")
    if cfg.launch.strategy != "deepspeed":  # DeepSpeed settings are checked by test_launch_configs
        args = sft_config(cfg, tmp_path / "out", has_eval=False)
        assert args.ddp_find_unused_parameters is expected.get("ddp_find_unused_parameters")
        override = cfg_of(tmp_path, *sets, "training.extra_args={ddp_find_unused_parameters: true}")
        assert sft_config(override, tmp_path / "out", has_eval=False).ddp_find_unused_parameters is True


# --- the devices a process sees ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpus,current,expected", [
    (0, None, ""), (0, "0,1,2,3", ""),  # a CPU request on a GPU node sees no GPU
    (2, None, "0,1"),  # no scheduler: the first G devices
    (2, "4,5", None), (2, "4,5,6,7", "4,5"),  # Slurm's gres list kept, cut to what was asked
])
def test_node_program_exposes_what_was_asked(gpus, current, expected):
    assert devices.for_node(gpus, current) == expected


@pytest.mark.parametrize("gpus,environ,expected", [
    (None, {}, "0"), (1, {"CUDA_VISIBLE_DEVICES": "2,3"}, "2"), (1, {"CUDA_VISIBLE_DEVICES": "3"}, None),
    (0, {"CUDA_VISIBLE_DEVICES": "0,1"}, ""),
    (4, {"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, None),  # launched: cuda:LOCAL_RANK of the node's
    (0, {"LOCAL_RANK": "1"}, ""),
])
def test_one_training_process_sees_one_device(gpus, environ, expected):
    assert devices.for_process(gpus, environ) == expected


# --- attention -------------------------------------------------------------------------------------------------------
def test_flash_attention_falls_back_to_sdpa_with_one_reason():
    from hpc_finetune.train.model import attention_kernel

    assert attention_kernel("flash_attention_2", cuda=True, has_flash_attn=True) == ("flash_attention_2", None)
    kernel, why = attention_kernel("flash_attention_2", cuda=True, has_flash_attn=False)
    assert kernel == "sdpa" and "flash-attn package is not installed" in why
    assert attention_kernel("flash_attention_2", cuda=False, has_flash_attn=True)[0] == "sdpa"
    assert attention_kernel("eager", cuda=False, has_flash_attn=False) == ("eager", None)


def test_check_says_flash_attn_is_missing_from_the_jobs_environment(home, tmp_path):
    venv = tmp_path / "env"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    site = venv / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    clusters = tmp_path / "clusters"
    clusters.mkdir()
    (clusters / "site.yaml").write_text(f"scheduler: local\ngpus_per_node: 1\nactivation: {{kind: venv, prefix: {venv}}}\n"
                                        f"storage: {{shared_root: {tmp_path}}}\n")
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (model / name).write_text("{}")
    (tmp_path / "d.jsonl").write_text('{"content": "hello"}\n')
    (tmp_path / "run.yaml").write_text("name: t\nmodel: {path: model, attn_implementation: flash_attention_2}\n"
                                       "data: {train_file: d.jsonl}\n")
    import os

    env = dict(os.environ, HPC_FINETUNE_CLUSTERS=str(clusters))
    proc = cli("check", "--cluster", "site", str(tmp_path / "run.yaml"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "flash-attn is not installed in the job's environment" in proc.stdout and "fall back to sdpa" in proc.stdout
    (site / "flash_attn").mkdir()
    assert "flash-attn" not in cli("check", "--cluster", "site", str(tmp_path / "run.yaml"), env=env).stdout


# --- merge ----------------------------------------------------------------------------------------------------------
def test_merge_uses_the_base_dtype_and_refuses_what_cannot_fit(tmp_path):
    from hpc_finetune.mergeplan import base_dtype, check_memory

    base = tmp_path / "llama7b"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "vocab_size": 32000, "torch_dtype": "bfloat16"}))
    assert base_dtype(base) == "bfloat16"
    check_memory(base, "bfloat16", available=64 * 10**9)  # 6.7B x 2 B x 1.2 = 16 GB: fits
    with pytest.raises(UserError, match=r"merging needs about 32 GB of memory \(base llama7b in float32\) but this "
                                        r"machine has 16 GB available; run it on a compute node"):
        check_memory(base, "float32", available=16 * 10**9)


# --- log lines that mean nothing ------------------------------------------------------------------------------------
@pytest.mark.train
def test_bitsandbytes_hub_kernel_line_is_not_shown():
    raw = subprocess.run([sys.executable, "-c", "import bitsandbytes"], capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-c", "import hpc_finetune.train, bitsandbytes, peft"],
                          capture_output=True, text=True)
    if "gemm_4bit_forward" not in raw.stderr:
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not try the hub kernel here")
    assert ours.returncode == 0 and "gemm_4bit_forward" not in ours.stderr + ours.stdout


def test_a_finished_job_says_where_things_are_and_what_to_run_next(tmp_path):
    from hpc_finetune.train.core import next_steps

    cfg = cfg_of(tmp_path)
    lines = next_steps(cfg, Path("/runs/demo-2/output/final"), "/runs/demo-2")
    assert lines[0] == "adapter: /runs/demo-2/output/final"
    assert lines[-1] == ("next: hpc-finetune eval demo-2   |   hpc-finetune report demo-2   |   hpc-finetune merge "
                         "demo-2   |   hpc-finetune sync demo-2")
    full = cfg_of(tmp_path, "method=full", "logging.wandb=disabled")
    assert next_steps(full, Path("/r/x/output/final"), "/r/x")[-1] == \
        "next: hpc-finetune eval x   |   hpc-finetune report x"


@pytest.mark.train
def test_visible_devices_are_set_before_anything_asks_cuda(demo_dir, tmp_path):
    """bitsandbytes (imported by peft, which transformers' Trainer imports) asks CUDA for its devices at import, and
    CUDA reads CUDA_VISIBLE_DEVICES only then: train() must set it before that import, in a fresh process."""
    code = f"""
import os, sys
os.environ.pop("CUDA_VISIBLE_DEVICES", None)
from hpc_finetune.runconfig import load_run_config
from hpc_finetune.train import core
seen = {{}}
original = core.limit_visible_devices
def spy(cfg):
    seen["asked_cuda_before"] = any(m in sys.modules for m in ("bitsandbytes", "peft", "transformers"))
    original(cfg)
class Stop(Exception):
    pass
def stop(*a, **k):
    raise Stop
core.limit_visible_devices, core.build_trainer = spy, stop
cfg = load_run_config(__import__("pathlib").Path({str(demo_dir / 'run.yaml')!r}),
                      ["resources.gpus_per_node=0", "logging.wandb=disabled", "output_dir={tmp_path / 'o'}"])
try:
    core.train(cfg)
except Stop:
    pass
print(seen["asked_cuda_before"], repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["False", "''"], proc.stdout
