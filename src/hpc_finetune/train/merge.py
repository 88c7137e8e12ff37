"""Merge a LoRA adapter into its base model and save a standalone model (QLoRA: into a dequantized base)."""

from __future__ import annotations

from pathlib import Path

from hpc_finetune.errors import UserError


def merge(adapter_dir: Path, out_dir: Path, dtype: str = "auto") -> Path:
    """``dtype`` auto: the base model's own (see hpc_finetune.mergeplan: a 70B base in fp32 is 280 GB)."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter_dir} has no adapter_config.json (full fine-tuning runs need no merge)",
                        source="merge")
    peft_cfg = PeftConfig.from_pretrained(str(adapter_dir))
    base_path = peft_cfg.base_model_name_or_path
    if dtype == "auto":
        from hpc_finetune.mergeplan import base_dtype

        dtype = base_dtype(Path(base_path))
    # The base is loaded unquantized in `dtype`: merging into 4-bit weights would round the adapter away.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    if base.get_input_embeddings().weight.shape[0] != len(tokenizer):
        base.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
