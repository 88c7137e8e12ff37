"""`plan` against a real training step: predicted vs measured peak memory on this CPU, two model sizes, seven cases.

    .venv/bin/python bench/plan_accuracy.py [--out bench/RESULTS.md] [--cases "120M qlora,120M lora"]

For each case a fresh process imports torch/transformers/peft, records its resident memory (the baseline), builds
a random-weight Llama-style model from a config.json, wraps it (LoRA via PEFT, or full fine-tuning), and runs two
optimizer steps (forward, backward, AdamW) on one micro-batch: the second is the first whole forward and backward
with the AdamW states allocated, the steady peak (a third adds nothing). The measured peak is the process
high-water mark (VmHWM) minus the baseline, with glibc's mmap threshold fixed so that RSS follows live tensors.
The prediction is `hpc_finetune.plan.estimate` for the same settings (fp32, no CUDA overhead row, SDPA attention
as the trainer runs it). The ratio is measured / predicted.

The QLoRA cases load the model as the training core does: the random-weight model is saved first, then
`hpc_finetune.train.model.load_model` quantizes it with bitsandbytes (nf4, 4-bit on this CPU; non-quantized parts in
RunConfig.load_dtype, fp32 here), PEFT adds the adapters and, as TRL's SFTTrainer does for quantized models, the
adapters are cast to bf16. The non-quantized weights are copied off the safetensors file mapping (as they would be
onto a GPU; its resident pages would otherwise count in RSS) and the peak counts from after the load (VmHWM reset
through /proc/self/clear_refs): the loading's transients are not in it, the loaded weights are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PY = sys.executable
CASES = [  # name, hidden, layers, heads, kv_heads, intermediate, vocab, method, micro_batch, seq_len, checkpointing
    ("30M full", 512, 8, 8, 4, 1376, 8000, "full", 4, 256, False),
    ("30M lora", 512, 8, 8, 4, 1376, 8000, "lora", 8, 512, False),
    ("120M full", 768, 12, 12, 12, 2048, 32000, "full", 2, 256, False),
    ("120M lora", 768, 12, 12, 12, 2048, 32000, "lora", 4, 512, False),
    ("120M lora+gc", 768, 12, 12, 12, 2048, 32000, "lora", 8, 512, True),
    ("120M qlora", 768, 12, 12, 12, 2048, 32000, "qlora", 4, 512, False),
    ("120M qlora+gc", 768, 12, 12, 12, 2048, 32000, "qlora", 8, 512, True),
]

CHILD = r"""
import json, sys, re
def rss(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
import torch, transformers, peft
torch.manual_seed(0)
torch.set_num_threads(2)
cfg = json.loads(sys.argv[1])
from transformers import LlamaConfig, LlamaForCausalLM
conf = LlamaConfig(hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                   num_key_value_heads=cfg["kv"], intermediate_size=cfg["inter"], vocab_size=cfg["vocab"],
                   tie_word_embeddings=False, attn_implementation="sdpa")
if cfg["method"] == "save":
    LlamaForCausalLM(conf).save_pretrained(cfg["path"])
    raise SystemExit(0)
if cfg["method"] == "qlora":
    # imported before the baseline, as the other libraries are
    import bitsandbytes, peft.tuners.lora.bnb, transformers.integrations.bitsandbytes  # noqa: F401
    import transformers.quantizers.quantizer_bnb_4bit  # noqa: F401
    from pathlib import Path
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.train.model import load_model, lora_config
base = rss("VmRSS")
if cfg["method"] == "qlora":
    run_yaml = Path(cfg["path"]) / "run.yaml"  # JSON is YAML: the run config a user would write
    run_yaml.write_text(json.dumps({"name": "bench", "method": "qlora", "model": {"path": cfg["path"]},
                                    "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
                                    "training": {"precision": "fp32", "gradient_checkpointing": cfg["gc"]},
                                    "data": {"train_file": "unused.jsonl"}}))
    run = load_run_config(run_yaml)
    model = peft.get_peft_model(load_model(run, None), lora_config(run))
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            if p.requires_grad:  # TRL's SFTTrainer casts the adapters of a quantized model to bf16
                p.data = p.data.to(torch.bfloat16)
            elif type(p).__name__ != "Params4bit":  # off the safetensors mapping (as onto a GPU), which unmaps it:
                p.data = p.data.clone()  # its stale pages would count in RSS, not in a GPU's memory
    import gc
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # the peak counts from here: not the loading's transients
else:
    model = LlamaForCausalLM(conf)
if cfg["method"] == "lora":
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                       target_modules="all-linear", task_type="CAUSAL_LM"))
if cfg["gc"]:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg["method"] != "full":
        model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["seq"]))
for _ in range(2):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
print(json.dumps({"peak": rss("VmHWM") - base,
                  "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                  "params": sum(p.quant_state.shape.numel() if getattr(p, "quant_state", None) is not None
                                else p.numel() for p in model.parameters())}))
"""


def predicted(case: tuple) -> tuple[float, int]:
    from hpc_finetune.plan import ModelShape, PlanInputs, estimate

    _, h, layers, heads, kv, inter, vocab, method, b, s, gc = case
    shape = ModelShape(hidden=h, intermediate=inter, layers=layers, heads=heads, kv_heads=kv, head_dim=h // heads,
                       vocab=vocab, tied=False)
    plan = estimate(PlanInputs(shape=shape, method=method, lora_r=8, precision="fp32",
                               micro_batch=b, seq_len=s, gradient_checkpointing=gc, gpus_per_node=0, cuda=False))
    return plan.total, plan.trainable


def measure(case: tuple, workdir: Path) -> dict:
    _, h, layers, heads, kv, inter, vocab, method, b, s, gc = case
    spec = {"hidden": h, "layers": layers, "heads": heads, "kv": kv, "inter": inter, "vocab": vocab,
            "method": method, "batch": b, "seq": s, "gc": gc, "path": str(workdir / f"model-{h}-{layers}")}
    # A fixed mmap threshold: glibc's default raises it after the first large free, after which freed tensors stay
    # in the heap and count in RSS forever; with it fixed, RSS follows the live tensors (what a GPU allocator's
    # max_memory_allocated would report).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    if method == "qlora" and not Path(spec["path"]).is_dir():  # a saved random-weight model for the core to load
        subprocess.run([PY, "-c", CHILD, json.dumps({**spec, "method": "save"})], capture_output=True, check=True)
    out = subprocess.run([PY, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{case[0]}: the measuring process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="plan-accuracy-"))
    for case in cases:
        pred, trainable = predicted(case)
        got = measure(case, workdir)
        assert got["trainable"] == trainable, (case[0], got["trainable"], trainable)
        rows.append((case[0], f"{case[8]}x{case[9]}{' gc' if case[10] else ''}", f"{got['params'] / 1e6:.0f}M",
                     f"{trainable:,}", f"{pred / 1e6:.0f}", f"{got['peak'] / 1e6:.0f}", f"{got['peak'] / pred:.2f}"))
    shutil.rmtree(workdir, ignore_errors=True)
    head = ("case", "micro-batch x tokens", "params", "trainable", "predicted MB", "measured MB", "measured/pred")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    note = (f"\n`plan` accuracy, fp32 on CPU ({platform.processor() or platform.machine()}, "
            f"{platform.python_version()}): peak of 2 AdamW steps (VmHWM minus the baseline after imports, "
            "MALLOC_MMAP_THRESHOLD_=65536) vs `plan`'s estimate; trainable counts agree exactly with PEFT's.\n\n")
    print(note + table)
    if args.out:
        with args.out.open("a") as f:
            f.write("\n## Memory plan vs measured peak (`bench/plan_accuracy.py`)\n" + note + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
