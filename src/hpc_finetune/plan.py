"""Per-GPU peak memory of a run, from the model's config.json alone (no weights, no torch): ``hpc-finetune plan``.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, section 3 and 5): with mixed-precision Adam each
trainable parameter costs 2 bytes of 16-bit weight, 2 of gradient and K=12 of fp32 master weight, momentum and
variance; ZeRO stage 1 shards the optimizer states, stage 2 also the gradients, stage 3 (and FSDP full shard) also
the weights. Unlike DeepSpeed's own estimators (deepspeed #5304), frozen parameters (LoRA, QLoRA) count as
weights only: they have no gradient and no optimizer state.

The bytes per parameter are those the training core really holds (read against the installed libraries):

- the loaded dtype is ``RunConfig.load_dtype``, the rule ``train/model.py`` loads with (full fine-tuning: fp32
  weights, so torch AdamW under autocast holds 4 + 4 + 8 = 16 B per parameter);
- DeepSpeed with bf16/fp16 casts the module to 16 bit and keeps fp32 master weights and Adam states (K = 12);
- FSDP with mixed precision: accelerate upcasts every flat parameter that holds a trainable parameter to fp32
  (accelerate/accelerator.py, "Upcasted low precision parameters"), so sharded parameters, gradients and Adam states
  are fp32, and MixedPrecision gathers them in 16 bit;
- PEFT keeps LoRA adapters in fp32 (``autocast_adapter_dtype``), but TRL's SFTTrainer casts the adapters of a
  quantized (4-bit or 8-bit) model to bf16 (trl/trainer/sft_trainer.py, "When using QLoRA"): 2 B, bf16 gradients
  and bf16 AdamW states;
- ZeRO-3 and FSDP gather parameters at run time: FSDP keeps the root unit (embeddings, final norm, head)
  gathered from its forward to its backward and a decoder layer plus the prefetched one; DeepSpeed keeps up to
  ``stage3_max_live_parameters`` gathered. That working set is counted always, offload or not;
- only DeepSpeed reads ``offload_optimizer``; FSDP's ``offload_params`` is torch's CPUOffload (parameters and
  gradients on the CPU, so the optimizer steps there too); DDP has no offload but keeps a gradient-sized copy in
  its all-reduce buckets (torch DDP ``gradient_as_bucket_view=False``, accelerate's default).

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation"), counted tensor by tensor for a
Llama-style block (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP), plus the logits and the fp32 loss,
in the dtypes autocast produces: the residual stream in the embeddings' dtype (fp32 for full fine-tuning under
autocast, which then saves a 16-bit copy of each projection's input), matmul outputs in the compute dtype.
Gradients and activations are summed as if they coexisted; in backward the activations are freed as the gradients
appear, which also covers autocast's 16-bit weight copies (2 B/param, freed layer by layer): the sum is an upper
bound. Login-light: imports nothing beyond the standard library and the run-config module.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hpc_finetune import dtypes
from hpc_finetune.errors import UserError
from hpc_finetune.memsize import megabytes

GB = 1e9  # decimal gigabytes, as the ZeRO paper and GPU data sheets use
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CUDA_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS/NCCL workspaces: not in the model, always on the GPU
ZERO3_MAX_LIVE_PARAMETERS = 1e9  # stage3_max_live_parameters in templates/launch/deepspeed.json.j2 (a test checks)


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
    model_dtype: str = "auto"  # model.dtype; the loaded dtype follows RunConfig.load_dtype
    quant_storage: str = "auto"  # quantization.quant_storage_dtype
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
    offload_optimizer: bool = False  # DeepSpeed only (the FSDP and DDP launch configs have no such setting)
    offload_params: bool = False
    nodes: int = 1
    gpus_per_node: int = 1
    gpu_memory_gb: float = 0.0
    host_memory_gb: float = 0.0  # what the job gets per node (profile: mem_per_gpu x GPUs); 0: unknown
    cuda: bool = True

    @property
    def world(self) -> int:
        return max(1, self.nodes * max(self.gpus_per_node, 1))

    @property
    def load_dtype(self) -> str:
        """The dtype the training core loads the (non-quantized) weights in: RunConfig's own rule, not a copy."""
        from hpc_finetune.runconfig import LaunchConfig, ModelConfig, QuantSettings, RunConfig, TrainingConfig

        cfg = RunConfig(name="plan", model=ModelConfig(path="plan", dtype=self.model_dtype), method=self.method,
                        quantization=QuantSettings(quant_storage_dtype=self.quant_storage),
                        training=TrainingConfig(precision=self.precision),
                        launch=LaunchConfig(strategy=self.strategy, zero_stage=self.zero_stage))
        return cfg.load_dtype


@dataclass
class Plan:
    inputs: PlanInputs
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (component, bytes per GPU, how)
    host_bytes_per_node: float = 0.0
    params: int = 0
    trainable: int = 0
    state_bytes_per_param: dict[str, float] = field(default_factory=dict)  # before sharding or offload

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
                "model_state_bytes_per_param": {k: round(v, 3) for k, v in self.state_bytes_per_param.items()},
                "per_gpu_gb": {name: round(b / GB, 3) for name, b, _ in self.rows},
                "total_per_gpu_gb": round(self.total / GB, 3), "gpu_memory_gb": i.gpu_memory_gb or None,
                "fits": self.fits(), "host_gb_per_node": round(self.host_bytes_per_node / GB, 3)}

    def strategy_text(self) -> str:
        i = self.inputs
        if i.strategy == "deepspeed":
            off = [n for n, on in (("optimizer", i.offload_optimizer), ("params", i.offload_params and
                                                                         i.zero_stage == 3)) if on]
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
    names = _targets(i)
    return s.layers * sum(i.lora_r * (a + b) for n, (a, b) in s.linears().items() if n in names)


def _targets(i: PlanInputs) -> tuple[str, ...]:
    return LINEAR_NAMES if i.lora_targets == "all-linear" else tuple(n.split(".")[-1] for n in i.lora_targets)


def quant_bytes_per_param(i: PlanInputs) -> float:
    """Bytes per weight of a quantized linear layer: 4 bits packed (in any storage dtype: the same bytes), or int8."""
    return {"qlora": 0.5, "lora-8bit": 1.0}.get(i.method, 0.0)


def quant_constant_bytes(i: PlanInputs, in_features: int, out_features: int) -> float:
    """Quantization constants of one quantized weight (bitsandbytes QuantState / SCB): no parameters, so FSDP and
    ZeRO-3 never shard them. 4-bit: an fp32 absmax per 64-weight block and the 16-value code; nested: 8-bit absmax
    with an fp32 absmax per 256 blocks, its 256-value code and offset. 8-bit: an fp32 scale per output row."""
    if i.method == "lora-8bit":
        return out_features * 4.0
    if i.method != "qlora":
        return 0.0
    blocks = -(-in_features * out_features // 64)
    if i.nested_quant:
        return blocks + 4 * -(-blocks // 256) + 256 * 4 + 4 + 16 * 4
    return 4 * blocks + 16 * 4


@dataclass
class Held:
    """Bytes per parameter as the training processes hold them (what the runtime does with the loaded model)."""

    linear: float  # each non-quantized or quantized (packed) base linear weight, sharded under stage 3
    layer_other: float  # decoder-layer norms
    root: float  # embeddings, head, final norm
    trainable: float  # a trainable parameter (its gradient has the same dtype)
    gather: float  # a 16-bit (or fp32) parameter as ZeRO-3/FSDP gather it
    gather_linear: float  # a base linear weight as gathered (packed 4-bit stays packed)
    residual: float  # activations of the residual stream (the embeddings' dtype)
    compute: float  # matmul outputs (autocast's dtype, or the weights' without autocast)
    adapter: float  # LoRA adapter inputs/outputs as the adapter matmul sees them
    adapter_cast: bool  # each adapter saves its own cast copy of its input
    note: str  # how the weights are held, for the table


def held_bytes(i: PlanInputs) -> Held:
    load = float(dtypes.BYTES[i.load_dtype])
    sixteen = i.precision in ("bf16", "fp16")
    ds, fsdp = i.strategy == "deepspeed", i.strategy == "fsdp"
    quantized = i.method in ("qlora", "lora-8bit")
    packed = quant_bytes_per_param(i)
    if ds and sixteen:
        # DeepSpeed's engine casts the module to bf16/fp16 and keeps fp32 master weights in its optimizer
        base = 2.0
        linear = packed if quantized else base
        trainable = 2.0
        note = "16-bit (DeepSpeed casts; fp32 master in the optimizer)"
        layer_other, root = base, base
    elif fsdp and sixteen:
        # accelerate upcasts each flat parameter holding a trainable parameter to fp32: all of them for full
        # fine-tuning; the decoder layers (adapters + frozen base + norms) for LoRA; the root unit stays as loaded
        linear = 4.0 * packed / dtypes.BYTES.get(i.load_dtype, 2) if quantized else 4.0
        layer_other, trainable = 4.0, 4.0
        root = 4.0 if i.method == "full" else load
        note = "fp32 flat parameters (accelerate upcasts trainable units under mixed precision)"
    else:
        linear = packed if quantized else load
        layer_other, root = load, load
        # full: the loaded dtype; LoRA: PEFT's fp32 adapters; quantized: TRL casts the adapters to bf16
        trainable = load if i.method == "full" else (2.0 if quantized else 4.0)
        note = f"{i.load_dtype} ({load:g} B/param)"
    if quantized:
        note = (f"{'4-bit' if i.method == 'qlora' else '8-bit'}{' nested' if i.nested_quant else ''} "
                            f"linears, the rest {'fp32' if root == 4 else '16-bit'}")
    gather = 2.0 if sixteen and (ds or fsdp) else load
    gather_linear = packed if quantized else gather
    compute = 2.0 if sixteen else load  # DeepSpeed runs its 16-bit module; the others autocast
    residual = gather if (ds or fsdp) else load
    autocast = sixteen and not ds
    adapter_weight = gather if fsdp else trainable  # FSDP computes with the gathered 16-bit views
    # PEFT casts a LoRA layer's input to the adapter's dtype and autocast casts it to 16 bit: either makes a
    # copy that lora_A saves for backward, unless the input already is that dtype
    adapter_cast = (residual != 2.0 or adapter_weight != residual) if autocast else adapter_weight != residual
    return Held(linear=linear, layer_other=layer_other, root=root,
                trainable=trainable, gather=gather, gather_linear=gather_linear, residual=residual,
                compute=compute, adapter=2.0 if autocast else adapter_weight, adapter_cast=adapter_cast,
                note=note)


def weight_bytes_total(i: PlanInputs, held: Optional[Held] = None) -> tuple[float, float]:
    """(shardable, replicated) bytes of all model weights as held, adapters excluded."""
    s, h = i.shape, held or held_bytes(i)
    shardable = (s.linear_params * h.linear + s.layers * 2 * s.hidden * h.layer_other
                 + (s.embedding_params + s.hidden) * h.root)
    return shardable, s.layers * sum(quant_constant_bytes(i, a, b) for a, b in s.linears().values())


def optimizer_bytes_per_param(i: PlanInputs, param_bytes: float, deepspeed: bool) -> float:
    name = i.optim.lower()
    if "8bit" in name:
        states = 2.0
    elif "sgd" in name:
        states = 0.0
    elif "adafactor" in name:
        states = 0.1  # factored second moment: rows + columns, no first moment
    elif deepspeed or "32bit" in name:
        states = 8.0  # DeepSpeed and bitsandbytes' 32-bit optimizers keep the two states in fp32
    else:
        states = 2 * param_bytes  # torch's Adam keeps its two states in the parameter's dtype
    master = 4.0 if deepspeed and param_bytes < 4 else 0.0  # fp32 master copy of 16-bit trainable weights
    return states + master


def gathered_bytes(i: PlanInputs, held: Held) -> tuple[float, str]:
    """Parameters that ZeRO-3 / FSDP hold gathered (whole, in the gather dtype) while they compute."""
    s = i.shape
    layer = (sum(a * b for a, b in s.linears().values()) * held.gather_linear + 2 * s.hidden * held.gather
             + (trainable_params(i) / s.layers * held.gather if i.method != "full" else 0.0))
    root = (s.embedding_params + s.hidden) * held.gather
    if i.strategy == "fsdp":
        # FSDP keeps the root unit gathered from its forward to its backward (torch _post_forward_reshard: "Do not
        # free the root's parameters"), one decoder layer computing and the next prefetched (BACKWARD_PRE)
        return root + 2 * layer, "FSDP: root unit (embeddings, head) + 2 decoder layers"
    total = s.linear_params * held.gather_linear + (s.params - s.linear_params) * held.gather
    cap = ZERO3_MAX_LIVE_PARAMETERS * held.gather  # stage3_max_live_parameters elements of the gather dtype
    return min(total, cap), f"ZeRO-3: up to stage3_max_live_parameters ({ZERO3_MAX_LIVE_PARAMETERS:.0e})"


def activation_bytes(i: PlanInputs, held: Optional[Held] = None) -> tuple[float, str]:
    """Saved activations of one micro-batch, plus the logits and loss. Returns (bytes, how)."""
    s, hb = i.shape, held or held_bytes(i)
    b, n = i.micro_batch, i.seq_len
    res, act = hb.residual, hb.compute
    h, inter, kv = s.hidden, s.intermediate, s.kv_heads * s.head_dim
    q = s.heads * s.head_dim
    per_token = (
        3 * h * res  # block input (attention RMSNorm input, residual), its fp32-upcast norm statistics, norm output
        + 2 * h * res  # MLP RMSNorm input and output
        + (q + 2 * kv  # q, k, v projections
           + q + kv  # q and k after rotary embedding
           + q  # attention output (input of o_proj)
           + 4 * inter) * act  # gate, up, SiLU(gate), SiLU(gate) * up
    )
    if res > act:
        per_token += 5 * h * act  # autocast saves its 16-bit copy of the input of q, k, v, gate and up
    if i.method != "full":
        lin = s.linears()
        names = _targets(i)
        per_token += sum(i.lora_r for nm in lin if nm in names) * hb.adapter  # A @ x of each adapter
        inputs = sum(lin[nm][0] for nm in lin if nm in names)
        if i.lora_dropout > 0:
            per_token += inputs * (hb.adapter + 1)  # the dropped copy of each adapter input and its mask
        elif hb.adapter_cast:
            per_token += inputs * hb.adapter  # each adapter's input cast to the adapter's dtype
        # With frozen base weights and norms, only lora_A keeps the two norm outputs and the input of down_proj
        # for backward (the attention output SDPA keeps itself): none of them without an adapter reading it, and
        # only the adapters' own copies when they read a cast or dropped copy.
        copies = i.lora_dropout > 0 or hb.adapter_cast
        for readers, size in (({"q_proj", "k_proj", "v_proj"}, h * res), ({"gate_proj", "up_proj"}, h * res),
                              ({"down_proj"}, inter * act)):
            if copies or not readers & set(names):
                per_token -= size
    per_layer = n * b * per_token
    if i.attention == "eager":
        per_layer += b * s.heads * n * n * act * 2  # scores and softmax, kept for backward
    if i.gradient_checkpointing:
        saved = s.layers * n * b * h * res + per_layer  # block inputs, plus one block recomputed at a time
        how = f"checkpointed: {s.layers} block inputs + 1 block"
    else:
        saved = s.layers * per_layer
        how = f"{s.layers} blocks x {per_layer / 1e6:.1f} MB"
    if i.method == "qlora":
        largest = max(a * b for a, b in s.linears().values())
        saved += largest * act  # bitsandbytes dequantizes one 4-bit weight at a time for the matmul
    logits = n * b * s.vocab * (act + 4 + 4)  # logits, fp32 upcast for the loss, its log-softmax
    return saved + logits + n * b * h * res, how + f"; logits {logits / 1e6:.1f} MB"


def estimate(i: PlanInputs) -> Plan:
    s = i.shape
    plan = Plan(inputs=i, params=s.params, trainable=trainable_params(i))
    ds, fsdp = i.strategy == "deepspeed", i.strategy == "fsdp"
    stage = i.zero_stage if ds else (3 if fsdp else 0)
    world = i.world
    held = held_bytes(i)
    param_b = held.trainable
    shardable, replicated = weight_bytes_total(i, held)
    adapters = plan.trainable * param_b if i.method != "full" else 0.0
    optim_b = optimizer_bytes_per_param(i, param_b, ds)
    states = model_state_bytes(1, plan.trainable, weight=shardable + adapters, grad=param_b, optim=optim_b,
                               stage=stage, world=world)
    plan.state_bytes_per_param = {"weights": (shardable + adapters + replicated) / s.params,
                                  "gradients": plan.trainable * param_b / s.params,
                                  "optimizer": plan.trainable * optim_b / s.params}
    plan.state_bytes_per_param["total"] = sum(plan.state_bytes_per_param.values())
    shard = f" / {world} GPUs" if world > 1 else ""
    w_note = held.note + (shard if stage >= 3 else "")
    gpu_weights, gpu_optim, gpu_grads = states["weights"] + replicated, states["optimizer"], states["gradients"]
    host = 0.0
    procs = max(i.gpus_per_node, 1)
    offload_params = i.offload_params and stage >= 3
    offload_optim = (ds and i.offload_optimizer) or (fsdp and i.offload_params)
    if offload_optim:
        # ZeRO-Offload: the optimizer steps on the CPU, its states and the gradient partitions live in host memory.
        # FSDP's CPUOffload keeps parameters and gradients on the CPU, so the optimizer steps there too.
        host += (gpu_optim + gpu_grads) * procs
        gpu_optim = gpu_grads = 0.0
    if offload_params:
        host += states["weights"] * procs
        gpu_weights = replicated
    off = " (offloaded to CPU)"
    plan.rows.append(("weights", gpu_weights, w_note + (off if offload_params else "")))
    plan.rows.append(("gradients", gpu_grads, f"{plan.trainable:,} trainable x {param_b:g} B"
                      + (shard if stage >= 2 else "") + (off if offload_optim else "")))
    plan.rows.append(("optimizer", gpu_optim, f"{i.optim}: {optim_b:g} B/trainable param"
                      + (shard if stage >= 1 else "") + (off if offload_optim else "")))
    if stage >= 3:
        gathered, how = gathered_bytes(i, held)
        plan.rows.append(("gathered", gathered, how + f", {held.gather:g} B/param"))
    if i.strategy == "ddp" and world > 1:
        plan.rows.append(("DDP buckets", plan.trainable * param_b, "all-reduce buckets: a copy of the gradients"))
    act, how = activation_bytes(i, held)
    plan.rows.append(("activations", act, f"micro-batch {i.micro_batch} x {i.seq_len} tokens; {how}"))
    if i.cuda:
        plan.rows.append(("CUDA overhead", CUDA_OVERHEAD_GB * GB, "context, cuBLAS/NCCL workspaces"))
    plan.host_bytes_per_node = host
    return plan


def smallest_fix(i: PlanInputs) -> Optional[str]:
    """The first change, in order of how little it costs, that makes the run fit; None if it fits or nothing does.

    Changes to the activations (checkpointing, a smaller micro-batch with the same global batch) come first, then
    changes to the model states (ZeRO-3, offload, QLoRA, more GPUs), each alone and then together with the
    activation changes."""
    if not i.gpu_memory_gb or estimate(i).fits():
        return None
    replace = dataclasses.replace

    def halvings(start: PlanInputs, note: str) -> list[tuple[str, PlanInputs]]:
        out, b = [], i.micro_batch
        while b > 1:
            b //= 2
            factor = i.micro_batch // b
            out.append((f"training.per_device_train_batch_size: {b} with gradient_accumulation_steps: "
                        f"{i.grad_accum * factor} (same global batch){note}",
                        replace(start, micro_batch=b, grad_accum=i.grad_accum * factor)))
        return out

    lighter = halvings(i, "")  # activation changes, cheapest first
    if not i.gradient_checkpointing:
        checkpointed = replace(i, gradient_checkpointing=True)
        lighter = ([("turn on training.gradient_checkpointing", checkpointed)] + lighter
                   + halvings(checkpointed, " and training.gradient_checkpointing"))
    for name, variant in lighter:
        if estimate(variant).fits():
            return name
    heavier: list[tuple[str, dict]] = []  # model-state changes
    if i.world > 1 and not (i.strategy == "deepspeed" and i.zero_stage == 3):
        heavier.append(("launch.strategy: deepspeed with zero_stage: 3", dict(strategy="deepspeed", zero_stage=3)))
    heavier.append(("launch.strategy: deepspeed, zero_stage: 3, offload_optimizer: true",
                    dict(strategy="deepspeed", zero_stage=3, offload_optimizer=True)))
    heavier.append(("launch.strategy: deepspeed, zero_stage: 3, offload_optimizer and offload_params: true",
                    dict(strategy="deepspeed", zero_stage=3, offload_optimizer=True, offload_params=True)))
    if i.method in ("full", "lora", "lora-8bit"):
        heavier.append(("method: qlora (4-bit base weights)", dict(method="qlora")))
    for gpus in (2, 4, 8, 16, 32, 64, 128, 256):
        per_node = min(gpus, max(i.gpus_per_node, 8))
        if gpus > i.world:
            nodes = max(1, gpus // per_node)
            heavier.append((f"{gpus} GPUs with DeepSpeed ZeRO-3 (--nodes {nodes} --gpus {per_node})",
                            dict(nodes=nodes, gpus_per_node=per_node, strategy="deepspeed", zero_stage=3)))
    for name, change in heavier:
        for extra, start in [("", i)] + [(f", and {text}", v) for text, v in lighter]:
            if estimate(replace(start, **change)).fits():
                return name + extra
    return None


def inputs_from_run(cfg, spec, profile) -> PlanInputs:  # RunConfig, JobSpec, ClusterProfile
    """The plan's view of a run: its model config, method, hyper-parameters and the job's shape."""
    t, lora = cfg.training, cfg.lora
    return PlanInputs(
        shape=ModelShape.from_model_dir(Path(cfg.model.path)), method=cfg.method, lora_r=lora.r,
        lora_targets=lora.target_modules, lora_dropout=lora.dropout, model_dtype=cfg.model.dtype,
        quant_storage=cfg.quantization.quant_storage_dtype, nested_quant=cfg.quantization.nested_quant,
        precision=t.precision, optim=t.optim,
        micro_batch=t.per_device_train_batch_size, grad_accum=t.gradient_accumulation_steps, seq_len=t.max_length,
        gradient_checkpointing=t.gradient_checkpointing, attention=cfg.model.attn_implementation,
        strategy=cfg.launch.strategy, zero_stage=cfg.launch.zero_stage,
        offload_optimizer=cfg.launch.offload_optimizer, offload_params=cfg.launch.offload_params,
        nodes=spec.nodes, gpus_per_node=spec.gpus_per_node, gpu_memory_gb=profile.gpu_memory_gb,
        host_memory_gb=_mem_gb(spec.mem), cuda=spec.gpus_per_node > 0,
    )


def _mem_gb(mem: str) -> float:
    return (megabytes(mem) or 0) * 1024 * 1024 / GB


def render_table(plan: Plan) -> str:
    i = plan.inputs
    lines = [f"{i.method} on {plan.params / 1e9:.2f}B parameters ({plan.trainable:,} trainable, "
             f"{100 * plan.trainable / max(plan.params, 1):.2f}%), {plan.strategy_text()}, world size {i.world}",
             f"  {'component':<14}{'GB/GPU':>9}  how"]
    for name, b, how in plan.rows:
        lines.append(f"  {name:<14}{b / GB:>9.2f}  {how}")
    lines.append(f"  {'total':<14}{plan.total / GB:>9.2f}")
    b = plan.state_bytes_per_param
    lines.append(f"  model states: {b['total']:.1f} B/param before sharding and offload (weights {b['weights']:.2f} "
                 f"+ gradients {b['gradients']:.2f} + optimizer {b['optimizer']:.2f})")
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
