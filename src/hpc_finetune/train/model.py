"""Model, tokenizer, quantization and LoRA objects built from the run config (as PEFT's examples/sft/utils.py)."""

from __future__ import annotations

import os
from typing import Any, Optional

from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import RunConfig

CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% if loop.last and add_generation_prompt %}{{'<|im_start|>assistant\n' }}"
                   "{% endif %}{% endfor %}")
ZEPHYR_TEMPLATE = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
                   "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
                   "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'"
                   "  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}"
                   "\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
# pad, bos, eos, additional special tokens
SPECIAL_TOKENS = {
    "chatml": ("<pad>", "<s>", "<|im_end|>", ["<|im_start|>user", "<|im_start|>assistant", "<|im_start|>system",
                                             "<|im_end|>", "<s>", "<pad>"]),
    "zephyr": ("<pad>", "<s>", "</s>", ["<|user|>", "<|assistant|>", "<|system|>", "</s>", "<s>", "<pad>"]),
}


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def weights_dtype(cfg: RunConfig) -> Any:
    return torch_dtype(cfg.load_dtype)  # the rule (and why) lives in RunConfig.load_dtype, shared with `plan`


def quantization_config(cfg: RunConfig) -> Optional[Any]:
    from transformers import BitsAndBytesConfig

    q = cfg.quantization
    if cfg.method == "qlora":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                                  bnb_4bit_compute_dtype=torch_dtype(cfg.compute_dtype),
                                  bnb_4bit_use_double_quant=q.nested_quant,
                                  bnb_4bit_quant_storage=torch_dtype(cfg.quant_storage_dtype))
    if cfg.method == "lora-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def lora_config(cfg: RunConfig) -> Optional[Any]:
    from peft import LoraConfig

    if not cfg.uses_lora:
        return None
    lc = cfg.lora
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, bias=lc.bias, task_type="CAUSAL_LM",
                      target_modules=lc.target_modules, modules_to_save=lc.modules_to_save)


def load_tokenizer(cfg: RunConfig) -> Any:
    from transformers import AutoTokenizer

    path = cfg.model.tokenizer_path or cfg.model.path
    fmt = cfg.model.chat_template_format
    try:
        if fmt in SPECIAL_TOKENS:
            pad, bos, eos, extra = SPECIAL_TOKENS[fmt]
            tok = AutoTokenizer.from_pretrained(path, pad_token=pad, bos_token=bos, eos_token=eos,
                                                additional_special_tokens=extra,
                                                trust_remote_code=cfg.model.trust_remote_code)
            tok.chat_template = CHATML_TEMPLATE if fmt == "chatml" else ZEPHYR_TEMPLATE
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as exc:
        raise UserError(f"cannot load the tokenizer from {path}: {str(exc).splitlines()[0]}",
                        field="model.tokenizer_path" if cfg.model.tokenizer_path else "model.path") from None
    if fmt == "model" and not tok.chat_template:
        raise UserError(f"chat_template_format: model, but the tokenizer in {path} has no chat template; use "
                        "chatml or zephyr", field="model.chat_template_format")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def attention_kernel(requested: str, *, cuda: bool, has_flash_attn: bool) -> tuple[str, Optional[str]]:
    """(kernel to load with, warning or None). flash_attention_2 needs the flash-attn package and a GPU: without the
    package transformers would try to fetch a kernel from the hub, which an offline compute node cannot reach, and
    fail after the queue wait. Fall back to sdpa (PyTorch's fused attention) with one line saying why."""
    if requested != "flash_attention_2":
        return requested, None
    if not cuda:
        return "sdpa", "attention: flash_attention_2 needs a GPU; using sdpa on CPU"
    if not has_flash_attn:
        return "sdpa", ("attention: flash_attention_2 asked, but the flash-attn package is not installed in this "
                        "environment (pip install flash-attn); using sdpa")
    return requested, None


def load_model(cfg: RunConfig, tokenizer: Any) -> Any:
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM

    attn, warning = attention_kernel(cfg.model.attn_implementation, cuda=torch.cuda.is_available(),
                                     has_flash_attn=importlib.util.find_spec("flash_attn") is not None)
    if warning and int(os.environ.get("RANK", "0")) == 0:
        print(f"hpc-finetune train: warning: {warning}", flush=True)
    kwargs: dict[str, Any] = {"dtype": weights_dtype(cfg), "trust_remote_code": cfg.model.trust_remote_code,
                              "attn_implementation": attn}
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.model.path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise UserError(f"cannot load the model from {cfg.model.path}: {str(exc).splitlines()[0]}",
                        field="model.path") from None
    if cfg.model.chat_template_format in SPECIAL_TOKENS:
        mean_resizing = not (quant is not None and cfg.launch.strategy == "fsdp")  # mean resizing fails on meta embeddings (QLoRA+FSDP)
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8, mean_resizing=mean_resizing)
    model.config.use_cache = not cfg.training.gradient_checkpointing
    return model
