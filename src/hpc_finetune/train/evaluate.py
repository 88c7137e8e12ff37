"""After training: eval loss and perplexity of the base and the tuned model on the run's eval data, and their answers
to the same prompts side by side. Results: OUT/metrics.json, OUT/samples.jsonl, and a short table on stdout.

The same data path as training (train/data.py: the run's eval_file or held-out fraction, tokenized and cached the
same way; or ``--data FILE`` through the same loader), the same tokenizer and chat template (train/model.py). An
adapter (LoRA/QLoRA) is loaded once on its base; the base's numbers come from the same object with the adapter
switched off (PEFT's ``disable_adapter``). A full or merged model is loaded next to the base.

Runnable as a program so that a job can run it: ``python -m hpc_finetune.train.evaluate RUN.yaml --model DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.errors import UserError
from hpc_finetune.evalsettings import GenerationSettings, add_generation_arguments, settings
from hpc_finetune.files import write_atomic
from hpc_finetune.runconfig import RunConfig, load_run_config


def read_prompts(path: Path) -> list[dict]:
    """Each line: {"prompt": text} or {"messages": [...]} (a trailing assistant turn is kept as the reference)."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", field="eval.prompts_file") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{path}: line {i} is not JSON", field="eval.prompts_file") from None
        msgs = row.get("messages") if isinstance(row, dict) else None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "role" in m for m in msgs):
            reference = msgs[-1].get("content") if msgs[-1]["role"] == "assistant" else row.get("reference")
            if msgs[-1]["role"] == "assistant":
                msgs = msgs[:-1]
            if not msgs:
                raise UserError(f"{path}: line {i} has only an assistant turn", field="eval.prompts_file")
            rows.append({"messages": msgs, "reference": reference})
        elif isinstance(prompt, str):
            rows.append({"prompt": prompt, "reference": row.get("reference")})
        else:
            raise UserError(f"{path}: line {i} needs a \"prompt\" string or a \"messages\" list of {{role, content}}",
                            field="eval.prompts_file")
    return rows


def prompt_text(row: dict, tokenizer: Any, cfg: RunConfig) -> str:
    """What the model sees: chat runs (and `messages` prompts) through the run's chat template with the assistant
    turn opened; text runs get the prompt as it is, as the model was trained on plain text."""
    if "messages" in row:
        return tokenizer.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
    if cfg.data.format == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                             add_generation_prompt=True)
    return row["prompt"]


def eval_dataset(cfg: RunConfig, tokenizer: Any, data_file: Optional[str]) -> tuple[Any, str]:
    """(tokenized eval rows or None, where they came from)."""
    from hpc_finetune.train import data as data_mod

    if data_file:
        raw = data_mod.load_raw(data_file, "eval_file")
        data_mod.validate_columns(raw, cfg.data, data_file)
        return data_mod.tokenize(raw, tokenizer, cfg), data_file
    _train, eval_ds, _info = data_mod.prepare(cfg, tokenizer)
    where = cfg.data.eval_file or (f"held-out {cfg.data.eval_fraction:g} of the training data"
                                   if cfg.data.eval_fraction else "")
    return eval_ds, where


def loss_on(model: Any, ds: Any, pad_id: int, batch_size: int, device: Any) -> dict:
    """Token-weighted mean cross-entropy over every labelled token of ``ds`` (next-token, as training counts it)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()
    packed = "seq_lengths" in ds.column_names
    with torch.no_grad():
        for start in range(0, len(ds), batch_size):
            if packed:  # rows of several samples: the training collator's position ids keep them apart
                from hpc_finetune.train.packing import REAL_TOKENS, PackedCollator

                batch = PackedCollator(pad_id)([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
                labels = batch.pop("labels")
                batch.pop(REAL_TOKENS)
                # use_cache=False: with a cache, transformers builds one causal mask and ignores the position ids
                # (masking_utils: packed sequences are detected only without a cache and without an attention mask)
                logits = model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()},
                               use_cache=False).logits
                target = labels[:, 1:].to(device)
                total += F.cross_entropy(logits.float()[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                         ignore_index=-100, reduction="sum").item()
                count += int((target != -100).sum())
                continue
            batch = ds[start:start + batch_size]
            width = max(len(x) for x in batch["input_ids"])
            ids = torch.full((len(batch["input_ids"]), width), pad_id, dtype=torch.long)
            labels = torch.full_like(ids, -100)
            mask = torch.zeros_like(ids)
            for i, (x, y) in enumerate(zip(batch["input_ids"], batch["labels"])):
                ids[i, :len(x)] = torch.tensor(x)
                labels[i, :len(y)] = torch.tensor(y)
                mask[i, :len(x)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float()
            target = labels[:, 1:].to(device)
            total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    loss = total / max(1, count)
    return {"eval_loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4), "tokens": count}


def generate(model: Any, tokenizer: Any, text: str, gen: GenerationSettings, device: Any) -> str:
    import torch

    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
    kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "do_sample": gen.do_sample,
                              "pad_token_id": tokenizer.pad_token_id}
    if gen.do_sample:
        torch.manual_seed(gen.seed)
        kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def load_pair(cfg: RunConfig, model_dir: Path, tokenizer: Any) -> tuple[Any, Any, str, Any]:
    """(base, tuned, kind, device); for an adapter both are one PeftModel, the base being it with the adapter off."""
    import torch

    from hpc_finetune.train.model import load_model, weights_dtype

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = load_model(cfg, tokenizer)
    # bitsandbytes models are placed on the GPU while loading (transformers' bnb quantizer: update_device_map) and
    # refuse .to(); the others are moved here
    quantized = getattr(base, "hf_quantizer", None) is not None
    if not quantized:
        base.to(device)
    base.config.use_cache = True
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(base, str(model_dir))
        return None, tuned, "adapter", device
    from transformers import AutoModelForCausalLM

    try:
        tuned = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=weights_dtype(cfg))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tuned model from {model_dir}: {str(exc).splitlines()[0]}",
                        source="eval") from None
    tuned.to(device)
    tuned.config.use_cache = True
    return base, tuned, "full", device


def evaluate(cfg: RunConfig, model_dir: Path, out_dir: Path, *, data_file: Optional[str] = None,
             prompts_file: Optional[str] = None, gen: Optional[GenerationSettings] = None,
             batch_size: Optional[int] = None, echo=print) -> dict:
    from hpc_finetune.train.core import set_offline
    from hpc_finetune.train.model import load_tokenizer

    started = time.time()
    gen = gen or GenerationSettings()
    set_offline(cfg)
    prompts_path = prompts_file or cfg.eval.prompts_file
    prompts = read_prompts(Path(prompts_path)) if prompts_path else []  # bad prompts fail before the model
    tokenizer = load_tokenizer(cfg)
    ds, where = eval_dataset(cfg, tokenizer, data_file)
    base, tuned, kind, device = load_pair(cfg, model_dir, tokenizer)

    def as_base():  # the base model: its own object, or the adapter model with the adapter switched off
        return contextlib.nullcontext(base) if base is not None else _adapter_off(tuned)

    metrics: dict[str, Any] = {"model": str(model_dir), "kind": kind, "data": where or None,
                               "generation": vars(gen), "prompts_file": prompts_path}
    bs = batch_size or cfg.training.per_device_eval_batch_size
    if ds is not None and len(ds):
        with as_base() as model:
            metrics["base"] = loss_on(model, ds, tokenizer.pad_token_id, bs, device)
        metrics["tuned"] = loss_on(tuned, ds, tokenizer.pad_token_id, bs, device)
        metrics["eval_rows"] = len(ds)
    samples = []
    for row in prompts:
        text = prompt_text(row, tokenizer, cfg)
        with as_base() as model:
            base_out = generate(model, tokenizer, text, gen, device)
        sample = {"prompt": text, "base": base_out, "tuned": generate(tuned, tokenizer, text, gen, device)}
        if row.get("reference") is not None:
            sample["reference"] = row["reference"]
        samples.append(sample)
    metrics["samples"] = len(samples)
    metrics["seconds"] = round(time.time() - started, 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    echo(table(metrics, samples, where))
    echo(f"results in {out_dir}: metrics.json, samples.jsonl")
    return metrics


@contextlib.contextmanager
def _adapter_off(model: Any):
    with model.disable_adapter():
        yield model


def table(metrics: dict, samples: list[dict], where: str) -> str:
    lines = []
    if "base" in metrics:
        lines += [f"eval data: {where} ({metrics['eval_rows']} rows, {metrics['tuned']['tokens']} labelled tokens)",
                  f"{'model':<8}{'eval loss':>12}{'perplexity':>14}"]
        for which in ("base", "tuned"):
            m = metrics[which]
            lines.append(f"{which:<8}{m['eval_loss']:>12.4f}{m['perplexity']:>14.2f}")
    else:
        lines.append("no eval data: set data.eval_file or data.eval_fraction in the run config, or pass --data FILE")
    if not samples:
        lines.append("no prompts: set eval.prompts_file in the run config, or pass --prompts FILE")

    def short(s: str) -> str:
        s = " ".join(s.split())
        return s if len(s) <= 100 else s[:97] + "..."
    for s in samples:
        lines += ["", f"prompt: {short(s['prompt'])}", f"  base : {short(s['base'])}", f"  tuned: {short(s['tuned'])}"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpc_finetune.train.evaluate")
    parser.add_argument("config", type=Path, help="the run config (RUN_DIR/run.yaml)")
    parser.add_argument("--model", type=Path, required=True, help="adapter folder, or a full/merged model folder")
    parser.add_argument("--out", type=Path, required=True)
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_run_config(args.config, [])
        evaluate(cfg, args.model, args.out, data_file=args.data, prompts_file=args.prompts, gen=settings(args),
                 batch_size=args.batch_size)
    except UserError as exc:
        print(f"hpc-finetune eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
