"""Packing keeps samples apart: a packed batch trains on exactly what the samples give one at a time.

Real demo model, real SFTTrainer (its compute_loss, our collator), fp32, eval mode, on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpc_finetune.runconfig import load_run_config

pytestmark = pytest.mark.train


def config(demo_dir: Path, tmp_path: Path, *sets: str):
    return load_run_config(demo_dir / "run.yaml", ["logging.wandb=disabled", f"output_dir={tmp_path / 'out'}",
                                                   "data.eval_file=null", *sets])


def trainer_for(cfg):
    from hpc_finetune.train.core import build_trainer

    trainer, info = build_trainer(cfg, Path(cfg.output_dir))
    trainer.model.eval()
    return trainer, info


def batch_loss(trainer, batch: dict) -> float:
    """The loss training computes for this collated batch: SFTTrainer.compute_loss, as in a training step."""
    import torch

    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, trainer._prepare_inputs(dict(batch))))


def alone_loss(model, samples: list[tuple[list[int], list[int]]]) -> float:
    """Token-weighted mean loss of the samples, each run alone (no padding, no packing, no mask)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in samples:
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
            target = torch.tensor(labels[1:])
            total += float(F.cross_entropy(logits[:-1], target, ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
    return total / count


def split_rows(rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    out = []
    for row in rows:
        start = 0
        for n in row["seq_lengths"]:
            out.append((row["input_ids"][start:start + n], row["labels"][start:start + n]))
            start += n
    return out


def mixed_rows(ds, k: int = 4) -> list[dict]:
    """k packed rows of several samples each, of different lengths (so the batch is padded too)."""
    rows = [ds[i] for i in range(len(ds)) if len(ds[i]["seq_lengths"]) >= 2]
    rows.sort(key=lambda r: len(r["input_ids"]))
    return [rows[0], rows[len(rows) // 3], rows[2 * len(rows) // 3], rows[-1]][:k]


VARLEN_CALLS: list = []


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """CPU stand-in for flash_attn_varlen_func as transformers calls it with cu_seq_lens (modeling_flash_attention_
    utils._flash_attention_forward): the batch flattened to one token axis, causal attention within each segment
    of cu_seq_lens only. It never sees a mask or the position ids."""
    import torch
    import torch.nn.functional as F

    b, h, n, d = query.shape
    cu = kwargs.get("cu_seq_lens_q")
    VARLEN_CALLS.append(cu is not None)
    cu = torch.arange(0, b * n + 1, n) if cu is None else cu  # a sample alone: one segment per row
    q, k, v = (x.transpose(1, 2).reshape(b * n, x.shape[1], d) for x in (query, key, value))
    out = torch.empty_like(q)
    for lo, hi in zip(cu[:-1].tolist(), cu[1:].tolist()):
        out[lo:hi] = F.scaled_dot_product_attention(q[lo:hi].transpose(0, 1), k[lo:hi].transpose(0, 1),
                                                    v[lo:hi].transpose(0, 1), is_causal=True, scale=scaling,
                                                    enable_gqa=True).transpose(0, 1)
    return out.reshape(b, n, h, d), None


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen"])
def test_packed_loss_equals_samples_run_alone(home, demo_dir, tmp_path, attn):
    cfg = config(demo_dir, tmp_path, f"model.attn_implementation={'sdpa' if attn == 'varlen' else attn}")
    assert cfg.training.packing and cfg.training.packing_strategy == "bfd"  # the default
    trainer, _info = trainer_for(cfg)
    if attn == "varlen":  # what flash_attention_2 gets from our batches, checked without a GPU
        from transformers import AttentionInterface

        AttentionInterface.register("hpcft_test_varlen", varlen_attention)
        trainer.model.get_base_model().set_attn_implementation("hpcft_test_varlen")
        VARLEN_CALLS.clear()
    rows = mixed_rows(trainer.train_dataset)
    assert len({len(r["input_ids"]) for r in rows}) > 1  # so the batch holds padding too
    batch = trainer.data_collator(rows)
    assert "attention_mask" not in batch  # an all-ones mask would switch off the per-sample masking
    packed = batch_loss(trainer, batch)
    alone = alone_loss(trainer.model, split_rows(rows))
    assert packed == pytest.approx(alone, rel=5e-6), (packed, alone)  # seen: 7e-8 apart
    if attn == "varlen":
        assert VARLEN_CALLS and VARLEN_CALLS[0] is True  # the packed batch reached it with its cu_seq_lens
        return

    # sharper: every real token's logits are those of its sample run alone; with the all-ones mask TRL's collator
    # would send (the trap in the issue), the same rows and position ids let samples see each other
    import torch

    gap = logit_gap(trainer.model, batch, rows)
    assert gap < 1e-4, gap
    leaky = dict(batch, attention_mask=torch.ones_like(batch["input_ids"]))
    assert logit_gap(trainer.model, leaky, rows) > 100 * max(gap, 1e-5)


def logit_gap(model, batch: dict, rows: list[dict]) -> float:
    """Largest difference between a packed batch's logits and those of each of its samples run alone."""
    import torch

    inputs = {k: v for k, v in batch.items() if k not in ("labels", "num_real_tokens")}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits.float()
        gap = 0.0
        for r, row in enumerate(rows):
            start = 0
            for n in row["seq_lengths"]:
                ids = row["input_ids"][start:start + n]
                alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
                gap = max(gap, float((logits[r, start:start + n] - alone).abs().max()))
                start += n
    return gap


def test_wrapped_layout_mixes_samples(home, demo_dir, tmp_path):
    """The old layout, now opt-in: the same samples in one wrapped block do not give the loss of the samples."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from hpc_finetune.train.packing import pack_wrapped

    bfd, _ = trainer_for(config(demo_dir, tmp_path))
    samples = split_rows(mixed_rows(bfd.train_dataset, 2))
    samples = [(ids, [-100] + ids[1:]) for ids, _labels in samples]  # plain LM labels, as wrapped tokenizes them
    alone = alone_loss(bfd.model, samples)

    wrapped, info = trainer_for(config(demo_dir, tmp_path / "w", "training.packing_strategy=wrapped"))
    assert info["packing"] == "wrapped" and info["pad_fraction"] == 0.0
    assert type(wrapped.data_collator) is DataCollatorForLanguageModeling  # TRL's, attention_mask and all
    block = pack_wrapped([ids for ids, _ in samples], [lab for _, lab in samples], sum(len(i) for i, _ in samples))
    assert len(block) == 1  # the samples whole, one after the other, in one block
    batch = wrapped.data_collator([block[0]])
    loss = batch_loss(wrapped, batch)
    assert abs(loss - alone) > 1e-3, (loss, alone)  # float noise is ~1e-7 here (the test above)
    row = {"input_ids": block[0]["input_ids"], "seq_lengths": [len(ids) for ids, _ in samples]}
    assert logit_gap(wrapped.model, batch, [row]) > 1e-2


def test_packed_rows_hold_every_sample_once_with_its_labels(home, demo_dir, tmp_path):
    """bfd rows hold each sample whole, once, with the labels it has unpacked (chat, completion-only: only the
    assistant's tokens are learned), its first token never a target, and rows within max_length."""
    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.model import load_tokenizer

    sets = ("data.train_file=chat.jsonl", "data.format=chat", "model.chat_template_format=chatml",
            "data.completion_only_loss=true", "training.max_length=96")
    packed_cfg = config(demo_dir, tmp_path, *sets)
    packed_cfg.data.train_file = str(demo_dir / "chat.jsonl")
    tok = load_tokenizer(packed_cfg)
    packed, _e, info = data_mod.prepare(packed_cfg, tok)
    assert info["packing"] == "bfd" and 0 <= info["pad_fraction"] < 0.1
    assert all(len(ids) <= 96 and sum(n) == len(ids) for ids, n in zip(packed["input_ids"], packed["seq_lengths"]))
    assert max(len(n) for n in packed["seq_lengths"]) >= 3

    unpacked_cfg = config(demo_dir, tmp_path, *sets, "training.packing=false")
    unpacked_cfg.data.train_file = packed_cfg.data.train_file
    unpacked, _e, _i = data_mod.prepare(unpacked_cfg, tok)
    expected = sorted((tuple(ids), tuple([-100] + labels[1:])) for ids, labels in
                      zip(unpacked["input_ids"], unpacked["labels"]))
    got = sorted((tuple(ids), tuple(labels)) for ids, labels in split_rows(list(packed)))
    assert got == expected
    start = tok.convert_tokens_to_ids("<|im_start|>")
    for ids, labels in got:  # user turn, then assistant turn: nothing before the assistant turn is learned
        learned = [i for i, lab in enumerate(labels) if lab != -100]
        headers = [i for i, t in enumerate(ids) if t == start]
        assert len(headers) == 2 and learned and min(learned) >= headers[1]


def test_old_format_cache_is_not_reused(home, demo_dir, tmp_path, monkeypatch):
    """A cache written by the previous format (wrapped blocks, no seq_lengths) is not loaded by this version."""
    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.model import load_tokenizer

    cfg = config(demo_dir, tmp_path)
    tok = load_tokenizer(cfg)
    current = data_mod.CACHE_FORMAT
    monkeypatch.setattr(data_mod, "CACHE_FORMAT", 2)
    cfg.training.packing_strategy = "wrapped"
    old, _e, info = data_mod.prepare(cfg, tok)
    assert info["cache"] == "miss" and "seq_lengths" not in old.column_names
    monkeypatch.setattr(data_mod, "CACHE_FORMAT", current)
    assert data_mod.prepare(cfg, tok)[2]["cache"] == "miss"  # same settings, new format: tokenized anew
    cfg.training.packing_strategy = "bfd"
    new, _e, info = data_mod.prepare(cfg, tok)
    assert info["cache"] == "miss" and "seq_lengths" in new.column_names
    assert data_mod.prepare(cfg, tok)[2]["cache"] == "hit"


def test_trained_token_count_is_the_real_tokens(home, demo_dir, tmp_path):
    """One epoch of packed chat (completion-only) trains with a falling loss, and the num_tokens TRL logs counts
    every real token once (TRL alone counts one row per micro-batch of ours: position_ids.size(1))."""
    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.core import train
    from hpc_finetune.train.model import load_tokenizer

    cfg = config(demo_dir, tmp_path, "data.train_file=chat.jsonl", "data.format=chat",
                 "model.chat_template_format=chatml", "data.completion_only_loss=true", "training.max_length=96",
                 "training.max_steps=-1", "training.num_train_epochs=1", "training.logging_steps=1")
    cfg.data.train_file = str(demo_dir / "chat.jsonl")
    summary = train(cfg)
    cached = data_mod.prepare(cfg, load_tokenizer(cfg))[2]
    assert cached["cache"] == "hit" and summary["num_tokens"] == cached["train_tokens"]
    losses = [json.loads(line)["loss"] for line in (Path(cfg.output_dir) / "progress.jsonl").read_text().splitlines()]
    assert len(losses) > 5 and losses[-1] < losses[0]
