"""`plan`: the ZeRO paper's worked example, a 7B Llama config through the CLI, LoRA counts against PEFT, and the
bytes per parameter against what the training core really loads and trains."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
from pathlib import Path

import pytest

from conftest import cli
from hpc_finetune.plan import (GB, ZERO3_MAX_LIVE_PARAMETERS, ModelShape, PlanInputs, estimate, inputs_from_run,
                               model_state_bytes, smallest_fix)

LLAMA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}


def test_zero_paper_worked_example():
    """Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 GPUs, mixed-precision Adam (K = 12)."""
    expected = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, total in expected.items():
        parts = model_state_bytes(7.5e9, 7.5e9, weight=2, grad=2, optim=12, stage=stage, world=64)
        assert round(sum(parts.values()) / GB, 1) == total


def test_estimate_uses_the_same_model_states_for_full_finetuning_under_deepspeed():
    shape = ModelShape.from_config(LLAMA_7B)
    for stage in (2, 3):
        plan = estimate(PlanInputs(shape=shape, method="full", strategy="deepspeed", zero_stage=stage, nodes=8,
                                   gpus_per_node=8, precision="bf16"))
        rows = {name: b for name, b, _ in plan.rows}
        ref = model_state_bytes(shape.params, shape.params, weight=2, grad=2, optim=12, stage=stage, world=64)
        assert rows["weights"] == pytest.approx(ref["weights"])
        assert rows["gradients"] == pytest.approx(ref["gradients"])
        assert rows["optimizer"] == pytest.approx(ref["optimizer"])


def test_frozen_weights_have_no_gradient_or_optimizer_state():
    """The DeepSpeed estimator bug (deepspeed #5304) we do not repeat: LoRA trains 0.6% of a 7B model."""
    shape = ModelShape.from_config(LLAMA_7B)
    full = estimate(PlanInputs(shape=shape, method="full", gradient_checkpointing=True, micro_batch=1))
    lora = estimate(PlanInputs(shape=shape, method="lora", lora_r=16, gradient_checkpointing=True, micro_batch=1))
    qlora = estimate(PlanInputs(shape=shape, method="qlora", lora_r=16, gradient_checkpointing=True, micro_batch=1))
    get = lambda p, name: next(b for n, b, _ in p.rows if n == name)  # noqa: E731
    assert lora.trainable == 39_976_960  # r=16 on q,k,v,o,gate,up,down of 32 layers
    assert get(lora, "gradients") == lora.trainable * 4 and get(lora, "optimizer") == lora.trainable * 8
    # fp32 Adam states for 6.7B fp32 master weights vs fp32 states for 40M fp32 adapter params
    assert get(full, "optimizer") == full.trainable * 8 and get(full, "optimizer") > 80 * get(lora, "optimizer")
    assert get(qlora, "weights") < get(lora, "weights") / 3  # 4-bit linears, 16-bit embeddings
    # TRL casts the adapters of a quantized model to bf16: bf16 gradients and bf16 AdamW states
    assert get(qlora, "gradients") == qlora.trainable * 2 and get(qlora, "optimizer") == qlora.trainable * 4
    nested = estimate(PlanInputs(shape=shape, method="qlora", nested_quant=True))
    assert get(nested, "weights") < get(qlora, "weights")  # double quantization saves ~0.37 bit/param


def test_smallest_fix_names_a_change_that_fits():
    shape = ModelShape.from_config(LLAMA_7B)
    # pure bf16 training (model.dtype: bfloat16): 8 B/param of model states, 54 GB for 7B
    too_big = PlanInputs(shape=shape, method="full", model_dtype="bfloat16", micro_batch=16, seq_len=4096,
                         gradient_checkpointing=False, gpu_memory_gb=80)
    assert estimate(too_big).fits() is False
    # gradient checkpointing alone is not enough here; a smaller micro-batch with the same global batch is
    assert smallest_fix(too_big) == ("training.per_device_train_batch_size: 1 with gradient_accumulation_steps: "
                                     "128 (same global batch)")
    # fp32 master weights (the default): 108 GB of model states fit no batch; DeepSpeed's offloaded optimizer does
    default = PlanInputs(shape=shape, method="full", micro_batch=1, gpu_memory_gb=80)
    assert smallest_fix(default) == "launch.strategy: deepspeed, zero_stage: 3, offload_optimizer: true"
    # no single change is enough for a large micro-batch without checkpointing: the state change plus checkpointing
    wide = dataclasses.replace(default, micro_batch=16, gradient_checkpointing=False)
    assert smallest_fix(wide) == ("launch.strategy: deepspeed, zero_stage: 3, offload_optimizer: true, and turn on "
                                  "training.gradient_checkpointing")
    # 67B parameters: offloading would need ~940 GB of host memory per node, the job has 256 GB; QLoRA fits
    big = PlanInputs(shape=ModelShape.from_config({**LLAMA_7B, "num_hidden_layers": 320}), method="full",
                     micro_batch=1, gpu_memory_gb=80, host_memory_gb=256)
    assert smallest_fix(big) == "method: qlora (4-bit base weights)"
    huge = PlanInputs(shape=ModelShape.from_config({**LLAMA_7B, "num_hidden_layers": 1000}), method="full",
                      micro_batch=1, gpu_memory_gb=80, host_memory_gb=256)
    assert "GPUs with DeepSpeed ZeRO-3" in smallest_fix(huge)
    lora_no_gc = PlanInputs(shape=shape, method="lora", micro_batch=8, seq_len=4096, gradient_checkpointing=False,
                            gpu_memory_gb=80)
    assert estimate(lora_no_gc).fits() is False
    assert smallest_fix(lora_no_gc) == "turn on training.gradient_checkpointing"


def test_plan_command_for_a_7b_config(home, tmp_path):
    (tmp_path / "llama7b").mkdir()
    (tmp_path / "llama7b" / "config.json").write_text(json.dumps(LLAMA_7B))
    run = tmp_path / "run.yaml"
    run.write_text("name: seven\nmodel: {path: llama7b}\nlora: {r: 16, alpha: 32}\ndata: {train_file: d.jsonl}\n"
                   "training: {per_device_train_batch_size: 4, gradient_accumulation_steps: 4, max_length: 2048}\n")
    one = cli("plan", "--cluster", "a100-example", "--nodes", "1", "--gpus", "1", "--methods", "full,lora,qlora",
              "--json", str(run), check=True, env={**__import__("os").environ, "USER": "alice"})
    plans = {p["method"]: p for p in json.loads(one.stdout)}
    assert set(plans) == {"full", "lora", "qlora"}
    assert plans["lora"]["trainable_params"] == 39_976_960 and plans["full"]["params"] == 6_738_415_616
    assert plans["qlora"]["total_per_gpu_gb"] < plans["lora"]["total_per_gpu_gb"] < plans["full"]["total_per_gpu_gb"]
    assert all(p["gpu_memory_gb"] == 80 and p["fits"] is not None for p in plans.values())
    eight = cli("plan", "--cluster", "a100-example", "--nodes", "2", "--gpus", "4", "--set", "method=full",
                "--set", "launch.strategy=deepspeed", "--set", "launch.zero_stage=3", str(run), check=True,
                env={**__import__("os").environ, "USER": "alice"})
    text = eight.stdout
    assert "DeepSpeed ZeRO-3, world size 8" in text and "/ 8 GPUs" in text
    for row in ("weights", "gradients", "optimizer", "activations", "CUDA overhead", "total"):
        assert f"\n  {row}" in text
    bad = cli("plan", "--cluster", "a100-example", str(tmp_path / "nope.yaml"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.train
@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
def test_trainable_count_matches_peft(demo_dir, targets):
    import peft
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(demo_dir / "model")
    model = peft.get_peft_model(AutoModelForCausalLM.from_config(config),
                                peft.LoraConfig(r=4, target_modules=targets, task_type="CAUSAL_LM"))
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters()) - real
    shape = ModelShape.from_model_dir(demo_dir / "model")
    plan = estimate(PlanInputs(shape=shape, method="lora", lora_r=4, lora_targets=targets))
    assert plan.trainable == real and shape.params == total


def _plan_json(tmp_path: Path, *sets: str, gpus: int = 1) -> dict:
    """`hpc-finetune plan --json` on a 7B-shaped config.json (no weights), as a user runs it."""
    (tmp_path / "llama7b").mkdir(exist_ok=True)
    (tmp_path / "llama7b" / "config.json").write_text(json.dumps(LLAMA_7B))
    run = tmp_path / "run.yaml"
    run.write_text("name: seven\nmodel: {path: llama7b}\ndata: {train_file: d.jsonl}\n"
                   "training: {per_device_train_batch_size: 1, max_length: 2048}\n")
    args = ["plan", "--cluster", "a100-example", "--nodes", "1", "--gpus", str(gpus), "--json"]
    for s in sets:
        args += ["--set", s]
    out = cli(*args, str(run), check=True, env={**os.environ, "USER": "alice"})
    return json.loads(out.stdout)


def test_full_finetuning_of_7b_on_one_gpu_counts_16_bytes_per_param(home, tmp_path):
    """fp32 master weights (the core loads float32 for full fine-tuning), fp32 gradients, AdamW's two fp32 states:
    4 + 4 + 8 bytes per parameter, all on the one GPU."""
    plan = _plan_json(tmp_path, "method=full")
    assert plan["strategy"] == "single process" and plan["params"] == 6_738_415_616
    gpu = plan["per_gpu_gb"]
    states = gpu["weights"] + gpu["gradients"] + gpu["optimizer"]
    assert states * GB / plan["params"] == pytest.approx(16.0, abs=0.001)
    assert (gpu["weights"], gpu["gradients"], gpu["optimizer"]) == pytest.approx((26.954, 26.954, 53.907), abs=0.001)
    assert plan["model_state_bytes_per_param"] == {"weights": 4.0, "gradients": 4.0, "optimizer": 8.0, "total": 16.0}
    assert plan["fits"] is False  # 108 GB of model states on an 80 GB A100


def test_offload_optimizer_changes_nothing_without_deepspeed(home, tmp_path, monkeypatch):
    """Only the DeepSpeed config reads offload_optimizer: the FSDP and DDP launch files are the same with it."""
    from hpc_finetune.runs import prepare_at
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.render import launch_files
    from hpc_finetune.resources import data_dir
    from hpc_finetune.runconfig import load_run_config

    shape = ModelShape.from_config(LLAMA_7B)
    for strategy in ("ddp", "fsdp"):
        for method in ("full", "lora"):
            base = dict(shape=shape, method=method, strategy=strategy, gpus_per_node=8, host_memory_gb=256)
            on, off = estimate(PlanInputs(**base, offload_optimizer=True)), estimate(PlanInputs(**base))
            assert on.rows == off.rows and on.host_bytes_per_node == off.host_bytes_per_node == 0
            assert on.strategy_text() == off.strategy_text()
    ds = dict(shape=shape, method="full", strategy="deepspeed", zero_stage=3, gpus_per_node=8)
    on, off = estimate(PlanInputs(**ds, offload_optimizer=True)), estimate(PlanInputs(**ds))
    get = lambda p, name: next(b for n, b, _ in p.rows if n == name)  # noqa: E731
    assert get(on, "optimizer") == 0 and get(off, "optimizer") > 0
    assert on.host_bytes_per_node == pytest.approx(8 * (get(off, "optimizer") + get(off, "gradients")))
    # the rendered launch files agree: offload_optimizer is nowhere in the FSDP config
    monkeypatch.setenv("USER", "alice")  # the example profile's storage roots name $USER
    profile = load_profile_file(data_dir("clusters") / "a100-example.yaml")
    texts = []
    for extra in ("", ", offload_optimizer: true"):
        cfg_path = tmp_path / "run.yaml"
        cfg_path.write_text("name: offload\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n"
                            f"launch: {{strategy: fsdp{extra}}}\nresources: {{nodes: 1, gpus_per_node: 4}}\n")
        prep = prepare_at(profile, load_run_config(cfg_path), tmp_path / "run", source=str(cfg_path))
        texts.append(launch_files(prep.cfg, prep.spec))
    assert texts[0] == texts[1]


def test_zero3_and_fsdp_count_the_gathered_parameters_without_offload():
    shape = ModelShape.from_config(LLAMA_7B)
    layer = sum(a * b for a, b in shape.linears().values()) + 2 * shape.hidden
    get = lambda p, name: next((b for n, b, _ in p.rows if n == name), None)  # noqa: E731
    zero3 = estimate(PlanInputs(shape=shape, method="full", strategy="deepspeed", zero_stage=3, gpus_per_node=8))
    # DeepSpeed keeps up to stage3_max_live_parameters gathered in 16 bit (the 7B model has more than that)
    assert get(zero3, "gathered") == ZERO3_MAX_LIVE_PARAMETERS * 2
    template = (Path(__file__).parents[1] / "templates" / "launch" / "deepspeed.json.j2").read_text()
    assert float(re.search(r'"stage3_max_live_parameters": ([0-9.e]+)', template).group(1)) == \
        ZERO3_MAX_LIVE_PARAMETERS
    # FSDP: the root unit (embeddings, head, final norm) stays gathered from forward to backward, plus the decoder
    # layer computing and the one prefetched, in the 16-bit MixedPrecision dtype
    fsdp = estimate(PlanInputs(shape=shape, method="full", strategy="fsdp", gpus_per_node=8))
    assert get(fsdp, "gathered") == (shape.embedding_params + shape.hidden + 2 * layer) * 2
    for p in (zero3, fsdp):
        sharded = sum(b for n, b, _ in p.rows if n in ("weights", "gradients", "optimizer"))
        assert sharded == pytest.approx(16 * shape.params / 8)  # fp32 Adam of FSDP, K=12 + 2 + 2 of DeepSpeed
    zero2 = estimate(PlanInputs(shape=shape, method="full", strategy="deepspeed", zero_stage=2, gpus_per_node=8))
    assert get(zero2, "gathered") is None  # ZeRO-2 keeps whole 16-bit weights on every GPU
    # offloading the parameters moves the shards to the host, not the gathered working set
    off = estimate(PlanInputs(shape=shape, method="full", strategy="fsdp", gpus_per_node=8, offload_params=True))
    assert get(off, "gathered") == get(fsdp, "gathered") and get(off, "weights") == 0


def test_qlora_counts_what_the_core_loads(home, tmp_path):
    """With the default storage (uint8 under DDP) the core loads the non-quantized parts (embeddings, head, norms)
    in the precision's dtype, and TRL trains bf16 adapters; fp32 precision loads them in fp32."""
    shape = ModelShape.from_config(LLAMA_7B)
    packed = shape.linear_params * (0.5 + 4 / 64) + 7 * 32 * 16 * 4  # + one 16-value nf4 code per weight
    rest = shape.embedding_params + shape.other_params
    adapters = 32 * 8 * sum(a + b for a, b in shape.linears().values())  # r=8, all-linear
    for precision, rest_bytes in (("bf16", 2), ("fp32", 4)):
        plan = _plan_json(tmp_path, "method=qlora", "lora.r=8", f"training.precision={precision}")
        gpu = plan["per_gpu_gb"]
        assert plan["trainable_params"] == adapters
        assert gpu["weights"] == pytest.approx((packed + rest * rest_bytes + adapters * 2) / GB, abs=0.001)
        assert gpu["gradients"] == pytest.approx(adapters * 2 / GB, abs=0.001)
    # activations in bf16 for bf16 QLoRA: less than the fp32 plan's, which holds fp32 residuals and logits
    bf16 = _plan_json(tmp_path, "method=qlora", "training.precision=bf16")["per_gpu_gb"]["activations"]
    fp32 = _plan_json(tmp_path, "method=qlora", "training.precision=fp32")["per_gpu_gb"]["activations"]
    assert bf16 < 0.75 * fp32


@pytest.mark.train
def test_plan_bytes_match_the_model_the_core_builds(home, demo_dir, tmp_path):
    """The weights, gradients and AdamW states `plan` counts are the bytes of the trainer the core builds (bf16
    precision on CPU), for every method: loaded dtypes, quantized storage and constants, adapter dtypes."""
    import torch

    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.train.core import build_trainer

    spec = types.SimpleNamespace(nodes=1, gpus_per_node=0, mem="1G")
    profile = types.SimpleNamespace(gpu_memory_gb=0)
    for sets in (["method=full"], ["method=lora"], ["method=qlora"], ["method=lora-8bit"],
                 ["method=qlora", "quantization.nested_quant=true"], ["method=qlora", "training.precision=fp32"]):
        cfg = load_run_config(demo_dir / "run.yaml", ["logging.wandb=disabled", f"output_dir={tmp_path / 'out'}",
                                                      "training.precision=bf16", "training.extra_args.use_cpu=true",
                                                      *sets])
        trainer, _ = build_trainer(cfg, tmp_path / "out")
        weights = grads = 0
        for p in trainer.model.parameters():
            weights += p.numel() * p.element_size()
            qs = getattr(p, "quant_state", None)
            extra = [getattr(p, "SCB", None)] + ([qs.absmax, qs.code] if qs is not None else [])
            if qs is not None and qs.nested:
                extra += [qs.state2.absmax, qs.state2.code, qs.offset]
            weights += sum(t.numel() * t.element_size() for t in extra if t is not None)
            if p.requires_grad:
                grads += p.numel() * p.element_size()
                p.grad = torch.zeros_like(p)
        trainer.create_optimizer()
        trainer.optimizer.step()
        states = sum(v.numel() * v.element_size() for st in trainer.optimizer.state.values()
                     for k, v in st.items() if k != "step")
        rows = {name: b for name, b, _ in estimate(inputs_from_run(cfg, spec, profile)).rows}
        assert (rows["weights"], rows["gradients"], rows["optimizer"]) == (weights, grads, states), sets
