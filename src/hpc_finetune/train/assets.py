"""Tiny offline assets for the quickstart and the tests: nothing is downloaded.

A random-weight Llama-style model, a byte-level BPE tokenizer trained here with ``tokenizers`` (with a ChatML chat
template), a text dataset and a chat dataset with learnable patterns, and a run config that uses them. Deterministic:
the same call writes the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SIZES = {  # hidden, layers, heads, kv_heads, intermediate
    "tiny": (64, 2, 4, 2, 128),
    "small": (256, 4, 8, 4, 688),
    "base": (512, 8, 8, 4, 1376),
    "medium": (1024, 16, 16, 8, 2816),  # ~190M parameters: the GPU acceptance run (bench/gpu_acceptance.py)
}
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
COLORS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
THINGS = ["cat", "dog", "bird", "fish", "car", "house", "tree", "river"]


def _sentence(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randrange(10), rng.randrange(9)
    if rng.random() < 0.5:
        q = f"what is {WORDS[a]} plus {WORDS[b]}?"
        return q, f"{WORDS[a]} plus {WORDS[b]} is {WORDS[a + b]}.", f"{WORDS[a]} plus {WORDS[b]} is {WORDS[a + b]}."
    color, thing = rng.choice(COLORS), rng.choice(THINGS)
    q = f"what color is the {thing} of {WORDS[a]}?"
    ans = f"the {thing} of {WORDS[a]} is {color}."
    return q, ans, f"the {color} {thing} of {WORDS[a]} sees the {rng.choice(COLORS)} {rng.choice(THINGS)}. {ans}"


def texts(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [_sentence(rng) for _ in range(n)]


def build_tokenizer(out: Path, corpus: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, vocab_size: int, size: str, tokenizer) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, inter = SIZES[size]
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build_demo(root: Path, size: str = "tiny", samples: int = 400) -> dict:
    """Write model/, text.jsonl, chat.jsonl, eval_text.jsonl, prompts.jsonl (for `eval`) and run.yaml under
    ``root``; return a summary."""
    root.mkdir(parents=True, exist_ok=True)
    train_rows = texts(samples, seed=1)
    eval_rows = texts(max(20, samples // 10), seed=2)
    corpus = [t for _, _, t in train_rows] + [f"{q} {a}" for q, a, _ in train_rows]
    model_dir = root / "model"
    tokenizer = build_tokenizer(model_dir, corpus)
    n_params = build_model(model_dir, len(tokenizer), size, tokenizer)
    write_jsonl(root / "text.jsonl", [{"content": t} for _, _, t in train_rows])
    write_jsonl(root / "eval_text.jsonl", [{"content": t} for _, _, t in eval_rows])
    write_jsonl(root / "chat.jsonl", [{"messages": [{"role": "user", "content": q},
                                                    {"role": "assistant", "content": a}]} for q, a, _ in train_rows])
    arithmetic = [(q, a) for q, a, _ in texts(60, seed=3) if " plus " in q][:4]
    write_jsonl(root / "prompts.jsonl", [{"prompt": a.rsplit(" is ", 1)[0] + " is", "reference": a}
                                         for _, a in arithmetic])
    (root / "run.yaml").write_text(DEMO_RUN)
    return {"root": str(root), "model": str(model_dir), "parameters": n_params, "size": size,
            "vocab": len(tokenizer), "samples": samples}


DEMO_RUN = """\
# The quickstart run: LoRA on the tiny demo model, CPU-friendly settings. Paths are relative to this file.
name: demo
model:
  path: model
method: lora
lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
data:
  train_file: text.jsonl
  eval_file: eval_text.jsonl
  format: text
  text_field: content
training:
  max_steps: 30
  learning_rate: 0.003
  lr_scheduler_type: constant
  per_device_train_batch_size: 8
  gradient_accumulation_steps: 1
  max_length: 64
  packing: true
  precision: fp32
  gradient_checkpointing: false
  logging_steps: 5
  save_steps: 10
  eval_strategy: "no"
logging:
  wandb: offline
eval:
  prompts_file: prompts.jsonl
resources:
  time: "00:30:00"
"""
