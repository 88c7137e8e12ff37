"""The run config (``run.yaml``): what to fine-tune, on what, how, and with which resources.

Defaults are ours and explicit, taken from the PEFT repository's ``examples/sft`` (run_peft.sh / train.py), not
from TRL's ``SFTConfig`` (which would silently turn on bf16 and gradient checkpointing and use lr 2e-5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from hpc_finetune import dtypes
from hpc_finetune.errors import UserError
from hpc_finetune.schema import apply_overrides, load, opt, read_yaml, required, set_key
from hpc_finetune.timefmt import parse_time

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


CALLBACK_SPEC = re.compile(r"^(?P<target>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)\Z")
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def parse_callback(spec: str) -> Optional[tuple[str, str, bool]]:
    """``(module or file, class name, is_file)`` for a ``training.callbacks`` entry; None if malformed."""
    m = CALLBACK_SPEC.match(spec.strip())
    if not m:
        return None
    target, name = m.group("target"), m.group("name")
    if target.endswith(".py"):
        return target, name, True
    return (target, name, False) if MODULE_NAME.match(target) else None


@dataclass
class ModelConfig:
    path: str = required("Local model folder (or a hub id when online).")
    tokenizer_path: Optional[str] = opt(None, "Tokenizer folder, if not the model's.")
    chat_template_format: Literal["none", "chatml", "zephyr", "model"] = opt(
        "none", "chatml|zephyr: add that template and its special tokens (embeddings resized); model: the "
                "tokenizer's own template; none: data is already formatted text.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = opt("sdpa", "Attention kernel.")
    dtype: Literal[("auto", *dtypes.FLOATING)] = opt("auto", "Dtype of the loaded weights (auto: "
                                                             "bf16/fp16 from precision, else float32).")
    trust_remote_code: bool = opt(False, "Allow model code shipped in the model folder.")


@dataclass
class LoraSettings:
    r: int = opt(8, "LoRA rank.")
    alpha: int = opt(16, "LoRA alpha.")
    dropout: float = opt(0.1, "LoRA dropout.")
    target_modules: Union[str, list[str]] = opt("all-linear", "Module names to adapt, or 'all-linear'.")
    bias: Literal["none", "all", "lora_only"] = opt("none", "Which biases train.")
    modules_to_save: Optional[list[str]] = opt(None, "Extra modules trained in full and saved with the adapter.")

    def validate(self, source: str, prefix: str) -> None:
        if self.r < 1:
            raise UserError("must be at least 1", source=source, field=f"{prefix}.r")
        if self.alpha < 1:
            raise UserError("must be at least 1", source=source, field=f"{prefix}.alpha")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError("must be in [0, 1)", source=source, field=f"{prefix}.dropout")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if not self.target_modules:
            raise UserError("name at least one module, or 'all-linear'", source=source,
                            field=f"{prefix}.target_modules")


@dataclass
class QuantSettings:
    quant_type: Literal["nf4", "fp4"] = opt("nf4", "4-bit quantization type (qlora).")
    nested_quant: bool = opt(False, "Double quantization of the 4-bit constants (qlora).")
    compute_dtype: Literal[("auto", *dtypes.FLOATING)] = opt(
        "auto", "Compute dtype of 4-bit layers (auto: training.precision's, as the seed's QLoRA scripts).")
    quant_storage_dtype: Literal["auto", "uint8", "float16", "bfloat16", "float32"] = opt(
        "auto", "Storage dtype of 4-bit weights (auto: training.precision's dtype under FSDP or ZeRO-3, whose "
                "flat parameters must be floating and uniform; uint8 otherwise).")


@dataclass
class DataConfig:
    train_file: Optional[str] = opt(None, "Training data: .jsonl/.json/.parquet/.csv/.arrow file or a "
                                          "save_to_disk folder.")
    eval_file: Optional[str] = opt(None, "Evaluation data, same formats.")
    dataset_name: Optional[str] = opt(None, "Hub dataset name or a folder with split subfolders (online, or "
                                            "local save_to_disk folders), instead of train_file.")
    splits: str = opt("train,test", "Splits of dataset_name: train[,test].")
    format: Literal["text", "chat"] = opt("text", "text: one text column; chat: a `messages` list of "
                                                  "{role, content}.")
    text_field: str = opt("content", "Column holding the text (format: text).")
    messages_field: str = opt("messages", "Column holding the conversation (format: chat).")
    eval_fraction: float = opt(0.0, "Fraction of train data held out for evaluation when no eval data is given.")
    completion_only_loss: bool = opt(False, "Chat: train only on assistant turns.")
    append_concat_token: bool = opt(False, "wrapped packing only: append EOS to each text sample (bfd and unpacked "
                                           "layouts always do).")
    add_special_tokens: bool = opt(False, "Let the tokenizer add its special tokens (BOS) to each sample.")
    max_samples: Optional[int] = opt(None, "Use only the first N training samples.")

    def validate(self, source: str, prefix: str) -> None:
        if bool(self.train_file) == bool(self.dataset_name):
            raise UserError("give exactly one of train_file or dataset_name", source=source,
                            field=f"{prefix}.train_file")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise UserError("must be in [0, 1)", source=source, field=f"{prefix}.eval_fraction")
        if self.max_samples is not None and self.max_samples < 1:
            raise UserError("must be at least 1 (or null for all)", source=source, field=f"{prefix}.max_samples")
        if self.completion_only_loss and self.format != "chat":
            raise UserError("completion_only_loss needs format: chat", source=source,
                            field=f"{prefix}.completion_only_loss")


@dataclass
class TrainingConfig:
    seed: int = opt(100, "Random seed.")
    learning_rate: float = opt(1e-4, "Peak learning rate.")
    lr_scheduler_type: str = opt("cosine", "Scheduler: linear, cosine, constant, constant_with_warmup, ...")
    warmup_steps: int = opt(0, "Warm-up optimizer steps.")
    warmup_ratio: float = opt(0.0, "Warm-up as a fraction of all steps (used when warmup_steps is 0).")
    weight_decay: float = opt(1e-4, "Weight decay.")
    num_train_epochs: float = opt(1.0, "Epochs (ignored when max_steps > 0).")
    max_steps: int = opt(-1, "Optimizer steps to train; -1: from epochs.")
    per_device_train_batch_size: int = opt(8, "Micro-batch per process.")
    per_device_eval_batch_size: int = opt(8, "Eval micro-batch per process.")
    gradient_accumulation_steps: int = opt(8, "Micro-batches per optimizer step.")
    optim: str = opt("adamw_torch", "Optimizer: adamw_torch, paged_adamw_32bit, paged_adamw_8bit, adamw_bnb_8bit, ...")
    max_grad_norm: float = opt(1.0, "Gradient clipping norm.")
    precision: Literal[tuple(dtypes.PRECISION)] = opt("bf16", "Mixed precision (bf16 as the seed; fp32 on CPUs "
                                                              "without bf16).")
    gradient_checkpointing: bool = opt(True, "Recompute activations in backward to save memory.")
    use_reentrant: bool = opt(False, "Reentrant gradient checkpointing (needed by some DeepSpeed setups).")
    max_length: int = opt(2048, "Longest sequence in tokens (longer samples are truncated).")
    packing: bool = opt(True, "Pack several samples into each max_length row (layout: packing_strategy).")
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = opt(
        "bfd", "bfd: whole samples into rows by best-fit decreasing; position ids restart per sample, so no token "
               "attends across samples (sdpa, eager, flash-attention varlen); little padding. Samples longer than "
               "max_length are truncated. bfd_split: the same, but long samples are cut into max_length pieces. "
               "wrapped (opt-in, not recommended): concatenate and cut into full blocks under one causal mask: no "
               "padding, but every sample attends to the ones before it in its block, a context it never has at "
               "inference, and its loss is not comparable with other tools'.")
    logging_steps: int = opt(5, "Log (and update progress) every N optimizer steps.")
    eval_strategy: Literal["no", "steps", "epoch"] = opt("no", "When to evaluate.")
    eval_steps: Optional[int] = opt(None, "Evaluate every N steps (eval_strategy: steps).")
    save_strategy: Literal["no", "steps", "epoch"] = opt("steps", "When to checkpoint.")
    save_steps: int = opt(100, "Checkpoint every N optimizer steps (save_strategy: steps).")
    save_total_limit: Optional[int] = opt(3, "Keep at most N checkpoints.")
    dataloader_num_workers: int = opt(0, "DataLoader worker processes.")
    resume: Union[bool, str] = opt("auto", "auto: resume from the last complete checkpoint in output_dir; "
                                           "false: start fresh; or a checkpoint path.")
    extra_args: dict[str, Any] = opt({}, "Any other SFTConfig/TrainingArguments field, by name (checked at start).")
    callbacks: list[str] = opt([], "Your own transformers TrainerCallback classes, as 'package.module:Class' or "
                                   "'path/to/file.py:Class' (built with no arguments, added after ours).")

    def validate(self, source: str, prefix: str) -> None:
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "max_length", "logging_steps", "save_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError("must be at least 1", source=source, field=f"{prefix}.{name}")
        for name in ("warmup_steps", "dataloader_num_workers", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise UserError("must be 0 or more", source=source, field=f"{prefix}.{name}")
        if self.learning_rate <= 0:
            raise UserError("must be positive", source=source, field=f"{prefix}.learning_rate")
        if self.num_train_epochs <= 0:
            raise UserError("must be positive", source=source, field=f"{prefix}.num_train_epochs")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError("must be in [0, 1)", source=source, field=f"{prefix}.warmup_ratio")
        for name in ("eval_steps", "save_total_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError("must be at least 1 (or null)", source=source, field=f"{prefix}.{name}")

        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError("-1 (use epochs) or a positive step count", source=source, field=f"{prefix}.max_steps")
        if isinstance(self.resume, bool) and self.resume:
            self.resume = "auto"
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise UserError("eval_strategy: steps needs eval_steps", source=source, field=f"{prefix}.eval_steps")
        for i, spec in enumerate(self.callbacks):
            if parse_callback(spec) is None:
                raise UserError(f"{spec!r} is not 'package.module:Class' or 'path/to/file.py:Class'",
                                source=source, field=f"{prefix}.callbacks[{i}]")


@dataclass
class LaunchConfig:
    strategy: Literal["ddp", "deepspeed", "fsdp"] = opt("ddp", "Distribution: ddp, deepspeed (ZeRO) or fsdp.")
    launcher: Literal["accelerate", "torchrun"] = opt("accelerate", "Launcher started once on each node.")
    zero_stage: Literal[2, 3] = opt(3, "DeepSpeed ZeRO stage.")
    offload_optimizer: bool = opt(False, "DeepSpeed only: optimizer state in CPU memory (FSDP: offload_params "
                                         "moves parameters, gradients and the optimizer step to the CPU).")
    offload_params: bool = opt(False, "DeepSpeed ZeRO-3/FSDP: parameters in CPU memory.")
    processes_per_node: Optional[int] = opt(None, "Processes per node (default: GPUs per node, or 1 on CPU).")

    def validate(self, source: str, prefix: str) -> None:
        if self.processes_per_node is not None and not 1 <= self.processes_per_node <= 1024:
            raise UserError("must be between 1 and 1024", source=source, field=f"{prefix}.processes_per_node")
        if self.strategy == "deepspeed" and self.offload_params and self.zero_stage != 3:
            raise UserError("parameter offload needs zero_stage: 3", source=source, field=f"{prefix}.offload_params")


@dataclass
class LoggingConfig:
    wandb: Literal["online", "offline", "disabled"] = opt("offline", "wandb mode (offline writes under the run "
                                                                     "directory; `wandb sync` it later).")
    wandb_project: str = opt("hpc-finetune", "wandb project.")
    wandb_entity: Optional[str] = opt(None, "wandb entity (team).")
    tensorboard: bool = opt(False, "Also log to TensorBoard under the output directory.")
    push_to_hub: bool = opt(False, "Push the result to the hub (needs HF_TOKEN in the environment, online).")
    hub_model_id: Optional[str] = opt(None, "Hub repository for push_to_hub.")


@dataclass
class EvalConfig:
    prompts_file: Optional[str] = opt(None, "Prompts for `hpc-finetune eval` to answer with the base and the tuned "
                                            "model side by side: .jsonl, each line {\"prompt\": text} or "
                                            "{\"messages\": [{role, content}, ...]}.")


@dataclass
class Resources:
    nodes: int = opt(1, "Nodes.")
    gpus_per_node: Optional[int] = opt(None, "GPUs per node (default: all the profile's; 0: CPU only).")
    time: Optional[str] = opt(None, "Time limit (default: the profile's default_time).")
    partition: Optional[str] = opt(None, "Partition (default: the profile's).")

    def validate(self, source: str, prefix: str) -> None:
        if not 1 <= self.nodes <= 100_000:
            raise UserError("must be between 1 and 100000", source=source, field=f"{prefix}.nodes")
        if self.gpus_per_node is not None and not 0 <= self.gpus_per_node <= 1024:
            raise UserError("must be between 0 and 1024", source=source, field=f"{prefix}.gpus_per_node")
        if self.time is not None:
            parse_time(self.time, source=source, field=f"{prefix}.time")


@dataclass
class RunConfig:
    name: str = required("Run name: letters, digits, . _ - (the run directory is named after it).")
    model: ModelConfig = opt(ModelConfig, "The base model.")
    method: Literal["lora", "qlora", "lora-8bit", "full"] = opt(
        "lora", "lora, qlora (4-bit base), lora-8bit (8-bit base) or full fine-tuning.")
    lora: LoraSettings = opt(LoraSettings, "LoRA adapter settings (lora, qlora, lora-8bit).")
    quantization: QuantSettings = opt(QuantSettings, "bitsandbytes 4-bit settings (qlora).")
    data: DataConfig = opt(DataConfig, "Training and evaluation data.")
    training: TrainingConfig = opt(TrainingConfig, "Optimization and checkpointing.")
    launch: LaunchConfig = opt(LaunchConfig, "Multi-process launch.")
    logging: LoggingConfig = opt(LoggingConfig, "Experiment tracking.")
    eval: EvalConfig = opt(EvalConfig, "After training: what `hpc-finetune eval` generates from.")
    resources: Resources = opt(Resources, "What to ask the scheduler for.")
    output_dir: Optional[str] = opt(None, "Where checkpoints and the final model go (default: RUN_DIR/output).")

    def validate(self, source: str, prefix: str) -> None:
        self._validate_quantized_sharding(source)
        if self.method == "full" and self.model.dtype == "float16" and self.training.precision == "fp16":
            raise UserError("full fine-tuning with fp16 mixed precision needs float32 trainable weights (torch's "
                            "GradScaler cannot unscale fp16 gradients); use model.dtype: auto", source=source,
                            field="model.dtype")
        if not RUN_NAME.match(self.name):
            raise UserError(f"{self.name!r} is not a valid run name: 1-64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit", source=source, field="name")
        if self.model.path == "":
            raise UserError("must not be empty", source=source, field="model.path")
        if self.logging.push_to_hub and not self.logging.hub_model_id:
            raise UserError("push_to_hub needs hub_model_id", source=source, field="logging.hub_model_id")

    def _validate_quantized_sharding(self, source: str) -> None:
        """FSDP and ZeRO-3 flatten and shard parameters: quantized weights must be floating and share one dtype."""
        if not self.shards_parameters:
            return
        how = "FSDP" if self.launch.strategy == "fsdp" else "DeepSpeed ZeRO-3"
        if self.method == "lora-8bit":
            raise UserError(f"8-bit LoRA cannot be sharded by {how} (int8 weights cannot be flattened or "
                            "partitioned); use method: qlora (4-bit weights in a floating storage dtype), or "
                            "launch.strategy: ddp / deepspeed with zero_stage: 2", source=source, field="method")
        if self.method == "qlora":
            storage = self.quant_storage_dtype
            if storage == "uint8":
                raise UserError(f"{how} cannot shard 4-bit weights stored as uint8 (torch: \"Cannot flatten integer "
                                "dtype tensors\"); use quant_storage_dtype: auto (the training precision's dtype)",
                                source=source, field="quantization.quant_storage_dtype")
            if storage != self.load_dtype:
                raise UserError(f"{how} needs one dtype for every parameter: quant_storage_dtype is {storage} but "
                                f"the model loads in {self.load_dtype}; use quant_storage_dtype: auto",
                                source=source, field="quantization.quant_storage_dtype")

    @property
    def uses_lora(self) -> bool:
        return self.method != "full"

    @property
    def shards_parameters(self) -> bool:
        """FSDP or ZeRO-3: parameters are flattened and sharded, so they must share one floating dtype."""
        return self.launch.strategy == "fsdp" or (self.launch.strategy == "deepspeed" and self.launch.zero_stage == 3)

    @property
    def precision_dtype(self) -> str:
        return dtypes.PRECISION[self.training.precision]

    @property
    def compute_dtype(self) -> str:
        """Compute dtype of 4-bit layers: the quantization setting, or (auto) the training precision's."""
        q = self.quantization.compute_dtype
        return self.precision_dtype if q == "auto" else q

    @property
    def quant_storage_dtype(self) -> str:
        """Storage of packed 4-bit weights: floating and equal to the loaded dtype under FSDP/ZeRO-3 (torch's FSDP
        cannot flatten integer or mixed-dtype parameters; PEFT's FSDP/DeepSpeed QLoRA guides), else uint8."""
        q = self.quantization.quant_storage_dtype
        if q != "auto":
            return q
        return self.precision_dtype if self.shards_parameters else "uint8"

    @property
    def load_dtype(self) -> str:
        """The dtype weights are loaded in (one rule for the training core and for `plan`):

        - model.dtype when set;
        - full fine-tuning: float32 master weights (autocast does the mixed precision, as the seed's utils.py;
          16-bit weights would round small AdamW updates away, and fp16 ones break GradScaler); DeepSpeed casts
          to 16 bit itself and keeps its own fp32 master copy;
        - QLoRA: the storage dtype when it is floating (FSDP/ZeRO-3 need everything in one dtype), else the
          training precision's dtype (the frozen non-quantized parts: embeddings, norms, head);
        - LoRA / 8-bit LoRA: the training precision's dtype (the base is frozen; PEFT keeps adapters in fp32).
        """
        if self.model.dtype != "auto":
            return self.model.dtype
        if self.method == "full":
            return "float32"
        if self.method == "qlora" and self.quant_storage_dtype != "uint8":
            return self.quant_storage_dtype
        return self.precision_dtype


def load_run_config(path: Path, overrides: list[str] | None = None, *, base_dir: Path | None = None,
                    flags: dict[str, tuple[str, Any]] | None = None) -> RunConfig:
    """Load and validate ``path`` with ``--set`` overrides and command-line ``flags`` (config key -> (flag, value));
    every value, whatever its source, passes the same checks, and an error names the flag or ``--set`` that gave
    it. Relative paths are made absolute against the file's folder."""
    data = read_yaml(path)
    origins: dict[str, str] = {}
    apply_overrides(data, list(overrides or []), origins=origins)
    for key, (flag, value) in (flags or {}).items():
        if value is not None:
            set_key(data, key, value, source=flag)
            origins[key] = flag
    cfg = load(RunConfig, data, source=str(path), origins=origins)
    absolutize(cfg, base_dir or path.resolve().parent, str(path))
    return cfg


def _looks_local(value: str) -> bool:
    if value.startswith(("/", "./", "../", "~")):
        return True
    try:
        return Path(value).exists()
    except OSError:  # e.g. a name too long: not a hub id either
        return True


def is_hub_id(value: str) -> bool:
    """True for ``org/name`` style ids that are not an existing local path."""
    return not _looks_local(value) and bool(re.fullmatch(r"[\w.-]+/[\w.-]+", value))


def absolutize(cfg: RunConfig, base: Path, source: str = "run config") -> None:
    """Relative local paths in the config become absolute, so that nodes and adapter_config.json agree."""

    def fix(value: Optional[str], field: str) -> Optional[str]:
        try:
            if value is None or is_hub_id(value):
                return value
            return str((base / Path(value).expanduser()).resolve())
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop, ...
            why = getattr(exc, "strerror", None) or str(exc)
            raise UserError(f"unusable path {value!r}: {why}", source=source, field=field) from None

    cfg.model.path = fix(cfg.model.path, "model.path")  # type: ignore[assignment]
    cfg.model.tokenizer_path = fix(cfg.model.tokenizer_path, "model.tokenizer_path")
    cfg.data.train_file = fix(cfg.data.train_file, "data.train_file")
    cfg.data.eval_file = fix(cfg.data.eval_file, "data.eval_file")
    cfg.eval.prompts_file = fix(cfg.eval.prompts_file, "eval.prompts_file")
    try:
        local_dataset = bool(cfg.data.dataset_name) and _looks_local(cfg.data.dataset_name or "")
    except OSError:
        local_dataset = True
    if local_dataset:
        cfg.data.dataset_name = fix(cfg.data.dataset_name, "data.dataset_name")
    if cfg.output_dir:
        cfg.output_dir = fix(cfg.output_dir, "output_dir")
    for i, spec in enumerate(cfg.training.callbacks):
        parsed = parse_callback(spec)
        if parsed and parsed[2]:
            cfg.training.callbacks[i] = f"{fix(parsed[0], f'training.callbacks[{i}]')}:{parsed[1]}"
    if isinstance(cfg.training.resume, str) and cfg.training.resume != "auto":
        cfg.training.resume = fix(cfg.training.resume, "training.resume")  # type: ignore[assignment]
