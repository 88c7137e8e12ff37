"""The baseline for bench/core_overhead.py: the SFT script a user would write with TRL alone.

    python bench/bare_trl.py MODEL_DIR TRAIN_JSONL OUT_JSON --max-steps N --packing 0|1 [--max-length L]

Same model, data, LoRA and SFTConfig values as the demo run.yaml that `hpc-finetune train` gets in the bench
(written out here by hand, as a user would), TRL doing its own tokenization and packing (--packing 1: TRL's
default, bfd, padding-free: each micro-batch flattened into one row, position ids restarting per sample, so samples
do not see each other, as in ours; the attention of the whole row is one block-diagonal mask). Prints nothing of note;
writes OUT_JSON with the train time, the tokens TRL counted, when the first optimizer step ended, and the time and
token count at every logging step.
"""

from __future__ import annotations

import argparse
import json
import time

STARTED = time.time()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("train_file")
    ap.add_argument("out")
    ap.add_argument("--max-steps", type=int, required=True)
    ap.add_argument("--packing", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=64)
    args = ap.parse_args()

    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    first = {}

    logged = []

    class FirstStep(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            first.setdefault("at", time.time())

        def on_log(self, a, state, control, logs=None, **kw):  # as hpc-finetune's progress.jsonl records it
            if logs and "loss" in logs:
                logged.append({"step": state.global_step, "time": time.time(), "num_tokens": logs.get("num_tokens")})

    tok = AutoTokenizer.from_pretrained(args.model)
    ds = load_dataset("json", data_files=args.train_file, split="train").rename_column("content", "text")
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32")
    cfg = SFTConfig(output_dir=f"{args.out}.d", max_steps=args.max_steps, learning_rate=0.003,
                    lr_scheduler_type="constant", per_device_train_batch_size=8, gradient_accumulation_steps=1,
                    max_length=args.max_length, packing=bool(args.packing), bf16=False, fp16=False,
                    gradient_checkpointing=False, logging_steps=5, save_strategy="no", report_to="none", seed=100,
                    weight_decay=1e-4, max_grad_norm=1.0, warmup_steps=0, dataloader_num_workers=0,
                    optim="adamw_torch", use_cpu=True)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[FirstStep()])
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    tokens = next((h["num_tokens"] for h in reversed(trainer.state.log_history) if "num_tokens" in h), None)
    with open(args.out, "w") as f:
        json.dump({"train_seconds": seconds, "num_tokens": tokens, "steps": trainer.state.global_step,
                   "first_step_at": first.get("at"), "started": STARTED, "log": logged}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
