"""Packing: how tokenized samples are laid into max_length rows, and how a batch of such rows reaches the model.

``bfd`` (the default) and ``bfd_split`` put whole samples into rows by best-fit decreasing (TRL's own
``pack_dataset``, the layout of TRL's default packing) and record each row's sample lengths (``seq_lengths``). The
collator below turns those into position ids that restart at 0 for every sample and sends NO attention_mask, so:

- sdpa and eager: transformers derives a block-diagonal causal mask from the position ids, per row
  (``masking_utils._preprocess_mask_arguments``: only when the 2-D attention_mask is None and there is no cache;
  ``find_packed_sequence_indices``). An all-ones attention_mask, which TRL's own collator sends unless it runs
  padding-free, would switch that off: hence our own collator.
- flash_attention_2/3: the collator also sends ``cu_seq_lens_q/k`` and ``max_length_q/k``, so the varlen kernel
  runs (``modeling_flash_attention_utils._flash_attention_forward``). transformers infers them from position ids
  only for a batch of ONE row (``_is_packed_sequence``: ``batch_size != 1`` -> False); our rows stay 2-D, so they
  must be given.

Rows stay 2-D (micro-batch x longest row) rather than TRL's single flattened row: with sdpa/eager a flattened row
costs a (B*L)^2 mask and B times the attention work. The label of each sample's first token is -100 (nothing
before it in its own sample predicts it), as TRL's padding-free collator does.

``wrapped`` is the old layout, kept as an explicit opt-in: samples concatenated and cut into full blocks under one
causal mask, so every sample attends to the ones before it in its block.
"""

from __future__ import annotations

from typing import Any, Optional

from hpc_finetune import cachekey
from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import RunConfig

REAL_TOKENS = "num_real_tokens"  # batch key: tokens that are not padding (popped before the forward)


layout = cachekey.packing_layout  # the row layout (None, 'bfd', 'bfd_split', 'wrapped'): part of the cache key


def pack(ids_all: list[list[int]], labels_all: list[list[int]], max_len: int, strategy: str) -> Any:
    return pack_wrapped(ids_all, labels_all, max_len) if strategy == "wrapped" else \
        pack_bfd(ids_all, labels_all, max_len, strategy)


def pack_bfd(ids_all: list[list[int]], labels_all: list[list[int]], max_len: int, strategy: str = "bfd") -> Any:
    """Whole samples into rows of at most max_len by best-fit decreasing (TRL's pack_dataset, over all samples at
    once, deterministic); each row keeps its samples' lengths in ``seq_lengths``, and each sample's first label is
    -100. bfd truncates samples longer than max_len; bfd_split cuts them into pieces packed as samples."""
    from datasets import Dataset
    from trl import pack_dataset

    ds = Dataset.from_dict({"input_ids": ids_all, "labels": labels_all})
    packed = pack_dataset(ds, max_len, strategy=strategy, map_kwargs={"batch_size": max(1, len(ds))})
    rows = packed.to_dict()
    for labels, lengths in zip(rows["labels"], rows["seq_lengths"]):
        start = 0
        for n in lengths:
            labels[start] = -100
            start += n
    return Dataset.from_dict(rows)


def pack_wrapped(ids_all: list[list[int]], labels_all: list[list[int]], max_len: int) -> Any:
    """Opt-in: concatenate everything, cut into full blocks of max_length (no padding, no sample boundaries)."""
    from datasets import Dataset

    flat_ids = [t for ids in ids_all for t in ids]
    flat_labels = [t for lab in labels_all for t in lab]
    n_blocks = len(flat_ids) // max_len
    if n_blocks == 0:
        raise UserError(f"the data holds {len(flat_ids)} tokens, fewer than one packed block of max_length "
                        f"{max_len}; lower training.max_length or use packing_strategy: bfd",
                        field="training.max_length")
    return Dataset.from_dict({
        "input_ids": [flat_ids[i * max_len:(i + 1) * max_len] for i in range(n_blocks)],
        "labels": [flat_labels[i * max_len:(i + 1) * max_len] for i in range(n_blocks)],
    })


class PackedCollator:
    """Batch of bfd rows: right-padded to the longest row, position ids restarting per sample (the padding is one
    more segment, its labels -100), varlen boundaries for flash attention, and no attention_mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        ids, labels, positions = [], [], []
        for e in examples:
            n = len(e["input_ids"])
            pad = width - n
            ids.append(list(e["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(e["labels"]) + [-100] * pad)
            positions.append([i for length in [*e["seq_lengths"], pad] for i in range(length)])
        position_ids = torch.tensor(positions, dtype=torch.long)
        starts = (position_ids.reshape(-1) == 0).nonzero().flatten()
        cu_seq_lens = torch.cat([starts, torch.tensor([position_ids.numel()])]).to(torch.int32)
        max_len = int(cu_seq_lens.diff().max())
        return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long),
                "position_ids": position_ids, "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
                "max_length_q": max_len, "max_length_k": max_len,
                REAL_TOKENS: sum(len(e["input_ids"]) for e in examples)}


def collator(cfg: RunConfig, tokenizer: Any) -> Optional[PackedCollator]:
    """Our collator for bfd rows; None (TRL's default, with its attention_mask) for the other layouts."""
    if layout(cfg) not in ("bfd", "bfd_split"):
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return PackedCollator(pad)


def trainer_class() -> type:
    """SFTTrainer that counts the real tokens of our packed batches. TRL 1.16 counts ``position_ids.size(1)`` for a
    batch without attention_mask (it expects one flattened row: sft_trainer.py compute_loss), one row of ours."""
    import torch
    from trl import SFTTrainer

    class PackedSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            real = inputs.pop(REAL_TOKENS, None)
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if real is not None and self.model.training and hasattr(self, "_total_train_tokens"):
                position_ids = inputs["position_ids"]
                extra = torch.tensor(real - position_ids.size(1), device=position_ids.device)
                self._total_train_tokens += (self.accelerator.gather_for_metrics(extra).sum().item()
                                             // getattr(self, "_tp_size", 1))
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return out

    return PackedSFTTrainer
