"""Per-GPU peak memory of a run, from the model's config.json alone (no weights, no torch): ``hpc-finetune plan``.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, section 3 and 5): with mixed-precision Adam each
trainable parameter costs 2 bytes of 16-bit weight, 2 of gradient and K=12 of fp32 master weight, momentum and
variance; ZeRO stage 1 shards the optimizer states, stage 2 also the gradients, stage 3 (and FSDP full shard) also
the weights. Unlike DeepSpeed's own estimators (deepspeed #5304), frozen parameters (LoRA, QLoRA) count as
weights only: they have no gradient and no optimizer state.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation"), counted tensor by tensor for a
Llama-style block (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP), plus the logits and the fp32 loss.
Login-light: imports nothing beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hpc_finetune.errors import UserError

GB = 1e9  # decimal gigabytes, as the ZeRO paper and GPU data sheets use
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CUDA_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS/NCCL workspaces: not in the model, always on the GPU


@dataclass
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict, source: str = "config.json") -> "ModelShape":
        cfg = config.get("text_config", config)
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            return cls(hidden=hidden, intermediate=int(cfg.get("intermediate_size") or 4 * hidden),
                       layers=int(cfg["num_hidden_layers"]), heads=heads,
                       kv_heads=int(cfg.get("num_key_value_heads") or heads),
                       head_dim=int(cfg.get("head_dim") or hidden // heads), vocab=int(cfg["vocab_size"]),
                       tied=bool(cfg.get("tie_word_embeddings", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a decoder config plan understands (missing or bad {exc})", source=source,
                            field="hidden_size/num_attention_heads/num_hidden_layers/vocab_size") from None

    @classmethod
    def from_model_dir(cls, path: Path) -> "ModelShape":
        cfg_file = Path(path) / "config.json"
        try:
            return cls.from_config(json.loads(cfg_file.read_text()), source=str(cfg_file))
        except OSError:
            raise UserError("no config.json: plan reads the model's shape from it (no weights needed)",
                            source=str(cfg_file), field="model.path") from None
        except ValueError as exc:
            raise UserError(f"not JSON: {exc}", source=str(cfg_file)) from None

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def other_params(self) -> int:
        return self.layers * 2 * self.hidden + self.hidden  # RMSNorm weights

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.other_params


@dataclass
class PlanInputs:
    """Everything the estimate depends on (a RunConfig and the job's shape reduced to numbers)."""

    shape: ModelShape
    method: str = "lora"  # lora | qlora | lora-8bit | full
    lora_r: int = 8
    lora_targets: object = "all-linear"
    lora_dropout: float = 0.0
    weight_bytes: float = 2.0  # loaded dtype of the (non-quantized) weights
    nested_quant: bool = False
    precision: str = "bf16"
    optim: str = "adamw_torch"
    micro_batch: int = 8
    grad_accum: int = 8
    seq_len: int = 2048
    gradient_checkpointing: bool = True
    attention: str = "sdpa"
    strategy: str = "ddp"  # ddp | deepspeed | fsdp
    zero_stage: int = 3
    offload_optimizer: bool = False
    offload_params: bool = False
    nodes: int = 1
    gpus_per_node: int = 1
    gpu_memory_gb: float = 0.0
    host_memory_gb: float = 0.0  # what the job gets per node (profile: mem_per_gpu x GPUs); 0: unknown
    cuda: bool = True

    @property
    def world(self) -> int:
        return max(1, self.nodes * max(self.gpus_per_node, 1))


@dataclass
class Plan:
    inputs: PlanInputs
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (component, bytes per GPU, how)
    host_bytes_per_node: float = 0.0
    params: int = 0
    trainable: int = 0

    @property
    def total(self) -> float:
        return sum(b for _, b, _ in self.rows)

    def fits(self) -> Optional[bool]:
        i = self.inputs
        if not i.gpu_memory_gb:
            return None
        host_ok = not i.host_memory_gb or self.host_bytes_per_node <= i.host_memory_gb * GB
        return self.total <= i.gpu_memory_gb * GB and host_ok

    def as_dict(self) -> dict:
        i = self.inputs
        return {"method": i.method, "strategy": self.strategy_text(), "world_size": i.world,
                "params": self.params, "trainable_params": self.trainable,
                "per_gpu_gb": {name: round(b / GB, 3) for name, b, _ in self.rows},
                "total_per_gpu_gb": round(self.total / GB, 3), "gpu_memory_gb": i.gpu_memory_gb or None,
                "fits": self.fits(), "host_gb_per_node": round(self.host_bytes_per_node / GB, 3)}

    def strategy_text(self) -> str:
        i = self.inputs
        if i.strategy == "deepspeed":
            off = [n for n, on in (("optimizer", i.offload_optimizer), ("params", i.offload_params)) if on]
            return f"DeepSpeed ZeRO-{i.zero_stage}" + (f", offload {' + '.join(off)}" if off else "")
        if i.strategy == "fsdp":
            return "FSDP full shard" + (", CPU offload" if i.offload_params else "")
        return "DDP" if i.world > 1 else "single process"


def model_state_bytes(params: float, trainable: float, *, weight: float, grad: float, optim: float, stage: int,
                      world: int) -> dict[str, float]:
    """Per-GPU bytes of weights, gradients and optimizer states under ZeRO stage 0-3 (FSDP full shard = 3).

    ``weight`` applies to all parameters; ``grad`` and ``optim`` (K in the ZeRO paper) to trainable ones only.
    """
    w = params * weight / (world if stage >= 3 else 1)
    g = trainable * grad / (world if stage >= 2 else 1)
    o = trainable * optim / (world if stage >= 1 else 1)
    return {"weights": w, "gradients": g, "optimizer": o}


def trainable_params(i: PlanInputs) -> int:
    s = i.shape
    if i.method == "full":
        return s.params
    names = LINEAR_NAMES if i.lora_targets == "all-linear" else [n.split(".")[-1] for n in i.lora_targets]
    return s.layers * sum(i.lora_r * (a + b) for n, (a, b) in s.linears().items() if n in names)


def weight_bytes_total(i: PlanInputs) -> float:
    """Bytes of all model weights as loaded (quantized linears for QLoRA / 8-bit; the rest in the load dtype)."""
    s = i.shape
    rest = (s.embedding_params + s.other_params) * i.weight_bytes
    if i.method == "qlora":
        # 4 bits per weight + one absmax per 64-weight block: fp32, or 8-bit with an fp32 per 256 blocks (nested)
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if i.nested_quant else 4 / 64)
        return s.linear_params * per + rest
    if i.method == "lora-8bit":
        return s.linear_params * 1.0 + rest
    return s.linear_params * i.weight_bytes + rest


def optimizer_bytes_per_param(i: PlanInputs, param_bytes: float, deepspeed: bool) -> float:
    name = i.optim.lower()
    if "8bit" in name:
        states = 2.0
    elif "sgd" in name:
        states = 0.0
    elif "adafactor" in name:
        states = 0.1  # factored second moment: rows + columns, no first moment
    elif deepspeed:
        states = 8.0  # DeepSpeed keeps Adam's two states in fp32
    else:
        states = 2 * param_bytes  # torch's Adam keeps its two states in the parameter's dtype
    master = 4.0 if deepspeed and param_bytes < 4 else 0.0  # fp32 master copy of 16-bit trainable weights
    return states + master


def activation_bytes(i: PlanInputs) -> tuple[float, str]:
    """Saved activations of one micro-batch, plus the logits and loss. Returns (bytes, how)."""
    s = i.shape
    b, n = i.micro_batch, i.seq_len
    act = 4.0 if i.precision == "fp32" else 2.0
    h, inter, kv = s.hidden, s.intermediate, s.kv_heads * s.head_dim
    q = s.heads * s.head_dim
    per_token = (
        3 * h  # block input (attention RMSNorm input, residual), its fp32-upcast norm statistics, norm output
        + q + 2 * kv  # q, k, v projections
        + q + kv  # q and k after rotary embedding
        + q  # attention output (input of o_proj)
        + 2 * h  # MLP RMSNorm input and output
        + 4 * inter  # gate, up, SiLU(gate), SiLU(gate) * up
    )
    if i.method != "full":
        lin = s.linears()
        names = LINEAR_NAMES if i.lora_targets == "all-linear" else [x.split(".")[-1] for x in i.lora_targets]
        per_token += sum(i.lora_r for nm in lin if nm in names)  # A @ x of each adapter
        if i.lora_dropout > 0:
            per_token += sum(lin[nm][0] for nm in lin if nm in names)  # the dropped copy of each adapter input
    per_layer = n * b * per_token * act
    if i.attention == "eager":
        per_layer += b * s.heads * n * n * act * 2  # scores and softmax, kept for backward
    if i.gradient_checkpointing:
        saved = s.layers * n * b * h * act + per_layer  # block inputs, plus one block recomputed at a time
        how = f"checkpointed: {s.layers} block inputs + 1 block"
    else:
        saved = s.layers * per_layer
        how = f"{s.layers} blocks x {per_layer / 1e6:.1f} MB"
    logits = n * b * s.vocab * (act + 4 + 4)  # logits, fp32 upcast for the loss, its log-softmax
    return saved + logits + n * b * h * act, how + f"; logits {logits / 1e6:.1f} MB"


def estimate(i: PlanInputs) -> Plan:
    s = i.shape
    plan = Plan(inputs=i, params=s.params, trainable=trainable_params(i))
    ds = i.strategy == "deepspeed"
    stage = i.zero_stage if ds else (3 if i.strategy == "fsdp" else 0)
    world = i.world
    if i.method == "full":
        param_b = 2.0 if ds and i.precision in ("bf16", "fp16") else i.weight_bytes
    else:
        # PEFT keeps adapters in fp32; DeepSpeed casts the whole module to bf16/fp16 and keeps an fp32 master
        param_b = 2.0 if ds and i.precision in ("bf16", "fp16") else 4.0
    weights_all = weight_bytes_total(i)
    if ds and i.precision in ("bf16", "fp16") and i.method in ("full", "lora"):
        weights_all = s.params * 2.0  # the engine holds the model in 16-bit
    adapters = plan.trainable * param_b if i.method != "full" else 0.0
    optim_b = optimizer_bytes_per_param(i, param_b, ds)
    states = model_state_bytes(1, plan.trainable, weight=weights_all + adapters, grad=param_b, optim=optim_b,
                               stage=stage, world=world)
    shard = f" / {world} GPUs" if world > 1 else ""
    weight_note = {"qlora": f"4-bit{' nested' if i.nested_quant else ''} linears", "lora-8bit": "8-bit linears"}
    w_note = weight_note.get(i.method, f"{i.weight_bytes:g} B/param") + (shard if stage >= 3 else "")
    gpu_weights, gpu_optim, gpu_grads = states["weights"], states["optimizer"], states["gradients"]
    host = 0.0
    procs = max(i.gpus_per_node, 1)
    if i.offload_optimizer or (i.strategy == "fsdp" and i.offload_params):
        # ZeRO-Offload / FSDP CPU offload: the optimizer steps on the CPU, so its states and the gradient
        # partitions live in host memory; the GPU keeps only communication buckets
        host += (gpu_optim + gpu_grads) * procs
        gpu_optim = gpu_grads = 0.0
    if i.offload_params and stage >= 3:
        host += gpu_weights * procs
        largest_layer = sum(a * b for a, b in s.linears().values()) * i.weight_bytes
        gpu_weights = 2 * largest_layer  # the working set: the layer in use and the one prefetched
    plan.rows.append(("weights", gpu_weights, w_note + (" (offloaded to CPU)" if i.offload_params else "")))
    plan.rows.append(("gradients", gpu_grads, f"{plan.trainable:,} trainable x {param_b:g} B"
                      + (shard if stage >= 2 else "") + (" (offloaded to CPU)" if gpu_grads == 0 and host else "")))
    plan.rows.append(("optimizer", gpu_optim, f"{i.optim}: {optim_b:g} B/trainable param"
                      + (shard if stage >= 1 else "") + (" (offloaded to CPU)" if gpu_optim == 0 and host else "")))
    act, how = activation_bytes(i)
    plan.rows.append(("activations", act, f"micro-batch {i.micro_batch} x {i.seq_len} tokens; {how}"))
    if i.cuda:
        plan.rows.append(("CUDA overhead", CUDA_OVERHEAD_GB * GB, "context, cuBLAS/NCCL workspaces"))
    plan.host_bytes_per_node = host
    return plan


def smallest_fix(i: PlanInputs) -> Optional[str]:
    """The first change, in order of how little it costs, that makes the run fit; None if it fits or nothing does."""
    if not i.gpu_memory_gb or estimate(i).fits():
        return None
    tries: list[tuple[str, PlanInputs]] = []
    if not i.gradient_checkpointing:
        tries.append(("turn on training.gradient_checkpointing", dataclasses.replace(i, gradient_checkpointing=True)))
    b = i.micro_batch
    while b > 1:
        b //= 2
        factor = i.micro_batch // b
        tries.append((f"training.per_device_train_batch_size: {b} with gradient_accumulation_steps: "
                      f"{i.grad_accum * factor} (same global batch)",
                      dataclasses.replace(i, micro_batch=b, grad_accum=i.grad_accum * factor)))
    if i.world > 1 and not (i.strategy == "deepspeed" and i.zero_stage == 3):
        tries.append(("launch.strategy: deepspeed with zero_stage: 3",
                      dataclasses.replace(i, strategy="deepspeed", zero_stage=3)))
    tries.append(("launch.strategy: deepspeed, zero_stage: 3, offload_optimizer: true",
                  dataclasses.replace(i, strategy="deepspeed", zero_stage=3, offload_optimizer=True)))
    tries.append(("launch.strategy: deepspeed, zero_stage: 3, offload_optimizer and offload_params: true",
                  dataclasses.replace(i, strategy="deepspeed", zero_stage=3, offload_optimizer=True,
                                      offload_params=True)))
    if i.method in ("full", "lora", "lora-8bit"):
        tries.append(("method: qlora (4-bit base weights)", dataclasses.replace(i, method="qlora")))
    for name, variant in tries:
        if estimate(variant).fits():
            return name
    for gpus in (2, 4, 8, 16, 32, 64, 128, 256):
        per_node = min(gpus, max(i.gpus_per_node, 8))
        variant = dataclasses.replace(i, nodes=max(1, gpus // per_node), gpus_per_node=per_node,
                                      strategy="deepspeed", zero_stage=3)
        if gpus > i.world and estimate(variant).fits():
            return f"{gpus} GPUs with DeepSpeed ZeRO-3 (--nodes {variant.nodes} --gpus {per_node})"
    return None


def inputs_from_run(cfg, spec, profile) -> PlanInputs:  # RunConfig, JobSpec, ClusterProfile
    """The plan's view of a run: its model config, method, hyper-parameters and the job's shape."""
    t, lora = cfg.training, cfg.lora
    weight = 4.0 if cfg.load_dtype == "float32" else 2.0  # the training core's own rule (RunConfig.load_dtype)
    return PlanInputs(
        shape=ModelShape.from_model_dir(Path(cfg.model.path)), method=cfg.method, lora_r=lora.r,
        lora_targets=lora.target_modules, lora_dropout=lora.dropout, weight_bytes=weight,
        nested_quant=cfg.quantization.nested_quant, precision=t.precision, optim=t.optim,
        micro_batch=t.per_device_train_batch_size, grad_accum=t.gradient_accumulation_steps, seq_len=t.max_length,
        gradient_checkpointing=t.gradient_checkpointing, attention=cfg.model.attn_implementation,
        strategy=cfg.launch.strategy, zero_stage=cfg.launch.zero_stage,
        offload_optimizer=cfg.launch.offload_optimizer, offload_params=cfg.launch.offload_params,
        nodes=spec.nodes, gpus_per_node=spec.gpus_per_node, gpu_memory_gb=profile.gpu_memory_gb,
        host_memory_gb=_mem_gb(spec.mem), cuda=spec.gpus_per_node > 0,
    )


def _mem_gb(mem: str) -> float:
    from hpc_finetune.livecheck import mem_mb

    return mem_mb(mem) * 1024 * 1024 / GB


def render_table(plan: Plan) -> str:
    i = plan.inputs
    lines = [f"{i.method} on {plan.params / 1e9:.2f}B parameters ({plan.trainable:,} trainable, "
             f"{100 * plan.trainable / max(plan.params, 1):.2f}%), {plan.strategy_text()}, world size {i.world}",
             f"  {'component':<14}{'GB/GPU':>9}  how"]
    for name, b, how in plan.rows:
        lines.append(f"  {name:<14}{b / GB:>9.2f}  {how}")
    lines.append(f"  {'total':<14}{plan.total / GB:>9.2f}")
    if plan.host_bytes_per_node:
        lines.append(f"  host memory for offload: {plan.host_bytes_per_node / GB:.1f} GB per node"
                     + (f" (the job gets {i.host_memory_gb:.0f} GB)" if i.host_memory_gb else ""))
    fits = plan.fits()
    if fits is None:
        lines.append("  fits: unknown (the profile sets no gpu_memory_gb)")
    elif fits:
        lines.append(f"  fits in {i.gpu_memory_gb:g} GB per GPU ({100 * plan.total / (i.gpu_memory_gb * GB):.0f}%)")
    else:
        fix = smallest_fix(i)
        lines.append(f"  does NOT fit in {i.gpu_memory_gb:g} GB per GPU; smallest change that fits: "
                     f"{fix or 'none found (more GPUs than 256, or a smaller model)'}")
    return "\n".join(lines)
