"""`plan`: the ZeRO paper's worked example, a 7B Llama config through the CLI, and LoRA counts against PEFT."""

from __future__ import annotations

import json

import pytest

from conftest import cli
from hpc_finetune.plan import GB, ModelShape, PlanInputs, estimate, model_state_bytes, smallest_fix

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
    # bf16 Adam states for 6.7B params vs fp32 states for 40M adapter params
    assert get(full, "optimizer") == full.trainable * 4 and get(full, "optimizer") > 80 * get(lora, "optimizer")
    assert get(qlora, "weights") < get(lora, "weights") / 3  # 4-bit linears, 16-bit embeddings
    nested = estimate(PlanInputs(shape=shape, method="qlora", nested_quant=True))
    assert get(nested, "weights") < get(qlora, "weights")  # double quantization saves ~0.37 bit/param


def test_smallest_fix_names_a_change_that_fits():
    shape = ModelShape.from_config(LLAMA_7B)
    too_big = PlanInputs(shape=shape, method="full", micro_batch=16, seq_len=4096, gradient_checkpointing=False,
                         gpu_memory_gb=80)
    assert estimate(too_big).fits() is False
    # gradient checkpointing alone is not enough here; a smaller micro-batch with the same global batch is
    assert smallest_fix(too_big) == ("training.per_device_train_batch_size: 1 with gradient_accumulation_steps: "
                                     "128 (same global batch)")
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
