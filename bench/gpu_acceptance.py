"""GPU acceptance: every training mode through the real launch path on one GPU, then one table.

``bash bench/gpu_acceptance.sh`` (the one command) installs the carried wheels and calls this module:

- ``gpu-check``: the card, or one clean "no GPU" line (exit 10) on a machine without CUDA;
- ``probe OUT.json``: versions, imports and unmet requirements of the training stack (imports torch);
- ``build ROOT``: the ~190M-parameter Llama-shaped demo model (``hpc_finetune.train.assets``, size ``medium``);
- ``run``: writes a local GPU cluster profile and one run config per case, runs each case with
  ``hpc-finetune submit --wait --cluster PROFILE`` (accelerate for FSDP and ZeRO-3, plain python for one process),
  each within its share of the time budget, and prints the table.

The driver itself imports no training library: torch runs only in the probe, the build and the jobs, so the driver
never holds a CUDA context while a case measures its memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
NO_GPU_EXIT = 10  # gpu-check's code for "no GPU"; the shell script turns it into exit 0
GRACE_S = 20  # a case is cancelled this long after its budget (its own time limit signals it 10 s before)
MODEL_SIZE, SAMPLES = "medium", 20000
# summary.json's cuda_max_memory_allocated_gb is max_memory_allocated() / 1e9 (train/core.py: cuda_summary), plan's
# decimal GB, so that the two compare
SUMMARY_MEMORY_UNIT = 1e9
# --cpu-rehearsal: the whole driver on a CPU (tiny model, fp32, few steps, no GPU), to catch its own bugs before a
# GPU lease is spent on them; its numbers mean nothing.
REHEARSAL = {"size": "tiny", "samples": 400, "cases": "lora-bf16,full-fp32-master",
             "overrides": {"resources": {"gpus_per_node": 0},
                           "training": {"precision": "fp32", "max_length": 64, "per_device_train_batch_size": 8,
                                        "max_steps": 10, "logging_steps": 2, "learning_rate": 3e-3}}}
STACK = ("transformers", "accelerate", "peft", "trl", "datasets", "bitsandbytes", "deepspeed", "submitit")
IMPORTS = {"trl": "from trl import SFTTrainer", "transformers": "import transformers", "peft": "import peft",
           "accelerate": "import accelerate", "datasets": "import datasets", "submitit": "import submitit",
           "bitsandbytes": "import bitsandbytes", "deepspeed": "import deepspeed", "flash_attn": "import flash_attn"}
BASE_NEEDS = ("transformers", "accelerate", "peft", "trl", "datasets", "submitit")
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (no sparsity); the first name found in the card's name wins.
PEAKS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("GH200", 989e12), ("H200", 989e12), ("H100", 989e12),
         ("A100", 312e12))

BASE_RUN: dict[str, Any] = {
    "model": {"path": "model", "attn_implementation": "sdpa"},
    "method": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
    "data": {"train_file": "text.jsonl", "format": "text", "text_field": "content"},
    "training": {"seed": 1, "max_steps": 60, "learning_rate": 2e-3, "lr_scheduler_type": "constant",
                 "warmup_steps": 0, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                 "max_length": 1024, "packing": True, "precision": "bf16", "gradient_checkpointing": False,
                 "logging_steps": 5, "save_strategy": "no", "eval_strategy": "no"},
    "logging": {"wandb": "disabled"},
    "resources": {"gpus_per_node": 1},
}


@dataclass
class Case:
    name: str
    what: str
    overrides: dict = field(default_factory=dict)
    needs: tuple = ()


# In this order: the plain baseline first; the launcher cases last, where a slow start costs the others least
# (each case gets its share of what is left, so time a case leaves unused goes to those after it).
CASES = [
    Case("lora-bf16", "LoRA r16, bf16, one process", {}),
    Case("flash-attn", "LoRA asking flash_attention_2 (sdpa fallback without flash-attn)",
         {"model": {"attn_implementation": "flash_attention_2"}}),
    Case("qlora-nf4", "QLoRA nf4, bf16 storage and compute",
         {"method": "qlora", "quantization": {"quant_type": "nf4", "quant_storage_dtype": "bfloat16"}},
         needs=("bitsandbytes",)),
    Case("full-fp32-master", "full fine-tuning, fp32 master weights, bf16 autocast",
         {"method": "full", "training": {"learning_rate": 3e-4}}),
    Case("fsdp-lora", "LoRA under FSDP full shard, accelerate, 1 GPU", {"launch": {"strategy": "fsdp"}}),
    Case("zero3-lora", "LoRA under DeepSpeed ZeRO-3, accelerate, 1 GPU",
         {"launch": {"strategy": "deepspeed", "zero_stage": 3}}, needs=("deepspeed",)),
]


def _src_on_path() -> None:
    if str(REPO / "src") not in sys.path:
        sys.path.insert(0, str(REPO / "src"))


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def case_config(case: Case, demo_root: Path, time_s: int, extra: Optional[dict] = None) -> dict:
    """The run config of one case, with absolute paths into the demo assets and a time limit of ``time_s``."""
    cfg = merge(merge(BASE_RUN, case.overrides), extra or {})
    cfg = {"name": f"gpu-{case.name}", **cfg}
    cfg["model"]["path"] = str(demo_root / "model")
    cfg["data"]["train_file"] = str(demo_root / "text.jsonl")
    cfg["resources"]["time"] = f"{time_s // 3600:02d}:{time_s % 3600 // 60:02d}:{time_s % 60:02d}"
    return cfg


def write_case(case: Case, demo_root: Path, folder: Path, time_s: int, extra: Optional[dict] = None) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump(case_config(case, demo_root, time_s, extra), sort_keys=False))
    return path


def gpu_profile(root: Path, gpus: int, gpu_memory_gb: float, cpus: int) -> dict:
    """A local (no scheduler) profile that uses this machine's GPUs; the shipped ``local`` has none."""
    return {"description": "this GPU machine, no scheduler (written by bench/gpu_acceptance.py)",
            "scheduler": "local", "gpus_per_node": gpus, "gpu_memory_gb": round(gpu_memory_gb, 1), "max_nodes": 1,
            "cpus_per_gpu": max(1, cpus // max(gpus, 1)), "mem_per_gpu": "64G", "default_time": "00:10:00",
            "max_time": "01:00:00", "storage": {"shared_root": str(root), "node_local": str(root / "node-local")},
            "offline": True, "signal_seconds": 10, "max_requeues": 0}


def write_profile(root: Path, gpus: int, gpu_memory_gb: float, cpus: int) -> Path:
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    path = root / "local-gpu.yaml"
    path.write_text(yaml.safe_dump(gpu_profile(root, gpus, gpu_memory_gb, cpus), sort_keys=False))
    return path


def plan_gb(run_yaml: Path, profile_yaml: Path) -> tuple[float, float]:
    """(plan's total GB per GPU, the part of it that is CUDA context and workspaces) for this run on this profile."""
    _src_on_path()
    from hpc_finetune.jobspec import resolve
    from hpc_finetune.plan import GB, estimate, inputs_from_run
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.runconfig import load_run_config

    cfg, profile = load_run_config(run_yaml), load_profile_file(profile_yaml)
    spec = resolve(profile, cfg, run_yaml.parent / "plan-only", source=str(run_yaml))
    plan = estimate(inputs_from_run(cfg, spec, profile))
    overhead = sum(b for name, b, _ in plan.rows if name == "CUDA overhead")
    return plan.total / GB, overhead / GB


def peak_flops(device_name: str) -> tuple[Optional[float], str]:
    for key, peak in PEAKS:
        if key.lower() in device_name.lower():
            return peak, f"{key} {peak / 1e12:.0f} TFLOP/s dense bf16"
    return None, f"unknown card {device_name!r}: no MFU"


def check_requirements(name: str, version: str, requires: list[str], installed: dict[str, Optional[str]]) -> list[str]:
    """Unmet ``Requires-Dist`` lines of one distribution (extras and other platforms skipped), one line each."""
    from packaging.requirements import Requirement

    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and ("extra" in str(req.marker) or not req.marker.evaluate()):
            continue
        have = installed.get(req.name.lower().replace("_", "-"))
        if have is None:
            out.append(f"{name} {version} needs {req}: not installed")
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(f"{name} {version} needs {req}: found {have}")
    return out


def project_requirements() -> list[str]:
    """hpc-finetune's own ``train`` and ``deepspeed`` extras (pyproject.toml), less wandb: these runs disable it."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [r for r in extras["train"] + extras["deepspeed"] if not r.startswith("wandb")]


def installed_versions(path: Optional[list[str]] = None) -> dict[str, str]:
    """Name -> version of what an import would find: the first distribution along the path wins, as for imports
    (wheels installed with --target ahead of the environment's own)."""
    import importlib.metadata as md

    out: dict[str, str] = {}
    for dist in md.distributions(path=path) if path is not None else md.distributions():
        out.setdefault(dist.metadata["Name"].lower().replace("_", "-"), dist.version)
    return out


# --- results -------------------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass  # a line cut by a killed job
    return rows


def steady_tokens_per_s(progress: list[dict], tokens_per_step: Optional[float]) -> Optional[float]:
    """Tokens/s between the first and the last logged step: start-up, compilation and the final save left out."""
    timed = [p for p in progress if p.get("time") is not None and p.get("step") is not None]
    if len(timed) < 2 or not tokens_per_step:
        return None
    a, b = timed[0], timed[-1]
    dt = b["time"] - a["time"]
    return (b["step"] - a["step"]) * tokens_per_step / dt if dt > 0 else None


def loss_falling(losses: list[float]) -> bool:
    """At least two logged losses and the last at least 5% below the first."""
    return len(losses) >= 2 and losses[-1] < 0.95 * losses[0]


def attention_kernel(summary: dict, log: str) -> str:
    """The kernel the model ran with (summary.json's ``attention``), with the core's ``attention: ...`` line when it
    fell back (flash-attn missing); else unknown."""
    found = re.findall(r"attention: ([^\n]+)", log)
    note = found[-1].strip()[:90] if found else ""
    kernel = summary.get("attention")
    if kernel:
        return f"{kernel} ({note})" if note else str(kernel)
    return note or "unknown"


WRAPPER_ERROR = re.compile(r"training on \S+ exited with status|Submitted job triggered an exception")


def failure_reason(log: str) -> str:
    """The trainer's own error line: the last exception or `train: error:` line that is not the node program's or
    submitit's report that the trainer failed."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^([A-Za-z_.]*(Error|Exception)\b|hpc-finetune train: error:)", ln) and \
                not WRAPPER_ERROR.search(ln):
            return ln[:240]
    return lines[-1][:240] if lines else "no log"


def job_log(run_dir: Optional[Path]) -> str:
    if run_dir is None or not (run_dir / "jobs").is_dir():
        return ""
    parts = [p.read_text(errors="replace") for p in sorted((run_dir / "jobs").glob("*_log.out"))]
    ctl = run_dir / "jobs" / "controller.log"
    return "\n".join(parts + ([ctl.read_text(errors="replace")] if ctl.exists() else []))


def collect(case: str, run_dir: Optional[Path], *, params: int, peak: Optional[float],
            plan: Optional[tuple[float, float]], status: str, seconds: float) -> dict:
    """One table row from the run's own files: OUTPUT/summary.json, OUTPUT/progress.jsonl and the job log."""
    out = run_dir / "output" if run_dir else None
    summary: dict = {}
    if out and (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    progress = read_jsonl(out / "progress.jsonl") if out else []
    losses = [p["loss"] for p in progress if p.get("loss") is not None]
    tps = steady_tokens_per_s(progress, summary.get("tokens_per_step")) or summary.get("tokens_per_s")
    mem = summary.get("cuda_max_memory_allocated_gb")
    mem = round(mem * SUMMARY_MEMORY_UNIT / 1e9, 3) if mem is not None else None
    log = job_log(run_dir)
    if status == "completed" and not summary:
        status = "failed: no summary.json"
    if status.startswith("failed") and out and (out / "interrupted.json").exists():
        step = json.loads((out / "interrupted.json").read_text()).get("step")
        status = f"stopped by its time limit at step {step}"
    row = {"case": case, "status": status, "seconds": round(seconds, 1),
           "steps": summary.get("step", progress[-1]["step"] if progress else None),
           "max_steps": summary.get("max_steps"), "first_loss": losses[0] if losses else None,
           "last_loss": losses[-1] if losses else None, "loss_falling": loss_falling(losses),
           "tokens_per_s": round(tps, 1) if tps else None,
           "mfu": round(6 * params * tps / peak, 4) if tps and peak else None,
           "max_mem_gb": mem, "plan_gb": round(plan[0], 2) if plan else None,
           "mem_ratio": round(mem / (plan[0] - plan[1]), 2) if mem is not None and plan and plan[0] > plan[1]
           else None,
           "attention": attention_kernel(summary, log), "device": summary.get("cuda_device")}
    if status.startswith(("failed", "timeout")) and log:
        row["status"] = f"{status}: {failure_reason(log)}"
    return row


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def render_table(rows: list[dict], *, card: str, peak_text: str, params: int) -> str:
    lines = [f"Card: {card}; model: {params / 1e6:,.1f}M-parameter Llama-shaped demo; MFU = 6 x parameters x "
             f"tokens/s / peak ({peak_text}); tokens/s between the first and last logged step; memory: "
             "torch.cuda.max_memory_allocated of the main process vs `plan` (ratio against plan less its 1 GB CUDA "
             "context row, which the allocator does not count)", "",
             "| case | status | steps | first loss | last loss | loss falling | tokens/s | MFU | max mem GB | "
             "plan GB | mem / plan | attention | s |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        steps = f"{_fmt(r['steps'])}/{_fmt(r['max_steps'])}" if r["steps"] is not None else "n/a"
        lines.append(f"| {r['case']} | {r['status']} | {steps} | {_fmt(r['first_loss'], '.3f')} | "
                     f"{_fmt(r['last_loss'], '.3f')} | {_fmt(r['loss_falling'])} | {_fmt(r['tokens_per_s'], ',.0f')} | "
                     f"{_fmt(r['mfu'], '.1%')} | {_fmt(r['max_mem_gb'], '.2f')} | {_fmt(r['plan_gb'], '.2f')} | "
                     f"{_fmt(r['mem_ratio'], '.2f')} | {r['attention']} | {_fmt(r['seconds'], '.0f')} |")
    return "\n".join(lines)


def passed(rows: list[dict]) -> bool:
    return all(r["status"] == "completed" and r["loss_falling"] for r in rows)


# --- the run -------------------------------------------------------------------------------------------------------
def case_budget(remaining: float, cases_left: int, cap: float) -> int:
    """Each case's share of what is left (the case itself included), at most ``cap`` seconds."""
    return int(min(cap, remaining / max(cases_left, 1)))


def unavailable(case: Case, probe: dict, work: Path) -> Optional[str]:
    imports = probe.get("imports", {})
    for mod in BASE_NEEDS + case.needs:
        if imports.get(mod, "not probed") != "ok":
            note = ""
            if mod == "deepspeed" and (work / "deepspeed-unavailable.txt").exists():
                note = (work / "deepspeed-unavailable.txt").read_text().strip() + "; "
            return f"{mod} unavailable: {note}{imports.get(mod, 'not probed')}"[:200]
    return None


def _kill_run(run_dir: Path) -> None:
    """End every process of this run (each carries HPCFT_RUN_DIR in its environment), by process id."""
    key = f"HPCFT_RUN_DIR={run_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if key in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass


def run_case(case: Case, run_yaml: Path, profile: Path, budget_s: int, env: dict,
             py: str) -> tuple[str, Optional[Path], float]:
    """``hpc-finetune submit --wait``; cancelled (and its processes ended) when it outlives its budget."""
    log_path = run_yaml.with_suffix(".submit.log")
    started = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen([py, "-m", "hpc_finetune", "submit", "--wait", "--cluster", str(profile),
                                 str(run_yaml)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            rc = proc.wait(timeout=budget_s + GRACE_S)  # the backstop behind the run's own time limit
        except subprocess.TimeoutExpired:
            rc = None
    text = log_path.read_text(errors="replace")
    m = re.search(r"run directory:\s+(\S+)", text)
    run_dir = Path(m.group(1)) if m else None
    if rc is None:
        m_id = re.search(r"submitted run (\S+)", text)
        if m_id:
            subprocess.run([py, "-m", "hpc_finetune", "cancel", m_id.group(1)], env=env, capture_output=True,
                           timeout=60)
        proc.kill()
        proc.wait()
        if run_dir:
            _kill_run(run_dir)
        return f"timeout after {budget_s} s", run_dir, time.time() - started
    if rc == 0:
        return "completed", run_dir, time.time() - started
    if run_dir is None:  # refused before a run existed (check, config): its error line says why
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return f"refused: {(lines[-1] if lines else 'no output')[:160]}", None, time.time() - started
    return f"failed (exit {rc})", run_dir, time.time() - started


def run(args: argparse.Namespace) -> int:
    started = args.started or time.time()
    deadline = started + args.budget
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "failed_logs.txt").unlink(missing_ok=True)
    py = sys.executable
    paths = [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, HPC_FINETUNE_HOME=str(work / "state"), HPCFT_TOKENIZED_CACHE=str(work / "tokcache"),
               WANDB_MODE="disabled", PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(paths))
    env.pop("HPC_FINETUNE_CLUSTER", None)
    probe_file = work / "probe.json"
    if subprocess.run([py, __file__, "probe", str(probe_file)], env=env, timeout=300).returncode:
        print("gpu_acceptance: the probe of the training stack failed (its error is above): nothing run")
        return 1
    probe = json.loads(probe_file.read_text())
    print("gpu_acceptance: " + ", ".join(f"{k} {v}" for k, v in probe["versions"].items()), flush=True)
    for line in probe["requirements"]:
        print(f"gpu_acceptance: unmet requirement: {line}", flush=True)
    for mod, state in probe["imports"].items():
        if state != "ok":
            print(f"gpu_acceptance: import {mod}: {state}", flush=True)
    size = REHEARSAL["size"] if args.cpu_rehearsal else MODEL_SIZE
    extra = REHEARSAL["overrides"] if args.cpu_rehearsal else None
    demo = work / f"demo-{size}"
    if not (demo / "model" / "model.safetensors").exists():
        t0 = time.time()
        samples = REHEARSAL["samples"] if args.cpu_rehearsal else SAMPLES
        if subprocess.run([py, __file__, "build", str(demo), "--size", size, "--samples", str(samples)], env=env,
                          timeout=600).returncode:
            print("gpu_acceptance: building the demo model failed (its error is above): nothing run")
            return 1
        print(f"gpu_acceptance: built the {size} demo model in {time.time() - t0:.0f} s", flush=True)
    _src_on_path()
    from hpc_finetune.plan import ModelShape

    params = ModelShape.from_model_dir(demo / "model").params
    profile = write_profile(work, probe["gpus"], probe["gpu_memory_gb"], os.cpu_count() or 1)
    peak, peak_text = peak_flops(probe["device"])
    rows = []
    names = args.cases or (REHEARSAL["cases"] if args.cpu_rehearsal else "")
    selected = [c for c in CASES if not names or c.name in names.split(",")]
    for i, case in enumerate(selected):
        budget = case_budget(deadline - time.time() - 5, len(selected) - i, args.case_cap)
        run_yaml = write_case(case, demo, work / "cases", max(budget, 60), extra)
        plan = plan_gb(run_yaml, profile)
        why = unavailable(case, probe, work)
        if why:
            rows.append(collect(case.name, None, params=params, peak=peak, plan=plan, status=why, seconds=0))
        elif budget < 45 and not args.cpu_rehearsal:
            rows.append(collect(case.name, None, params=params, peak=peak, plan=plan,
                                status=f"skipped: {budget} s of the budget left", seconds=0))
        else:
            print(f"gpu_acceptance: {case.name} ({case.what}), budget {budget} s", flush=True)
            status, run_dir, secs = run_case(case, run_yaml, profile, budget, env, py)
            rows.append(collect(case.name, run_dir, params=params, peak=peak, plan=plan, status=status, seconds=secs))
            if status != "completed":  # one file for every failure's log tail (a device call returns 8 files)
                tail = (run_yaml.with_suffix(".submit.log").read_text(errors="replace") + job_log(run_dir))
                with (out / "failed_logs.txt").open("a") as f:
                    f.write(f"===== {case.name}: {rows[-1]['status']}\n" + "\n".join(tail.splitlines()[-150:]) + "\n")
        print(f"gpu_acceptance: {case.name}: {rows[-1]['status']}", flush=True)
    table = render_table(rows, card=f"{probe['device']} ({probe['gpus']} visible)", peak_text=peak_text,
                         params=params)
    versions = ", ".join(f"{k} {v}" for k, v in probe["versions"].items())
    (out / "gpu_acceptance.json").write_text(json.dumps({"probe": probe, "rows": rows}, indent=1) + "\n")
    (out / "gpu_acceptance.md").write_text(
        f"## GPU acceptance (`bash bench/gpu_acceptance.sh`)\n\n{time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"{probe['device']}, {os.cpu_count()} cores; {versions}; whole run {time.time() - started:.0f} s.\n\n"
        f"{table}\n")
    print(table)
    print(f"gpu_acceptance: {'PASS' if passed(rows) else 'FAIL'} in {time.time() - started:.0f} s "
          f"(table and logs in {out})")
    return 0 if passed(rows) else 1


# --- sub-commands that import torch (run in their own processes) ----------------------------------------------------
def gpu_check() -> int:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means: nothing can run here
        print(f"gpu_acceptance: no GPU (torch not importable: {type(exc).__name__}): nothing run")
        return NO_GPU_EXIT
    if not torch.cuda.is_available():
        print("gpu_acceptance: no GPU (torch.cuda.is_available() is False): nothing run")
        return NO_GPU_EXIT
    print(f"gpu_acceptance: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    return 0


def probe(path: Path) -> int:
    import importlib.metadata as md

    import torch

    result: dict[str, Any] = {"python": sys.version.split()[0], "device": "cpu (rehearsal)", "gpus": 0,
                              "gpu_memory_gb": 0.0, "cuda": torch.version.cuda,
                              "versions": {"torch": torch.__version__}, "imports": {}, "requirements": []}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        result.update(device=props.name, gpus=torch.cuda.device_count(), gpu_memory_gb=props.total_memory / 1e9)
    installed = installed_versions()
    for name in STACK:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        result["versions"][name] = dist.version
        result["requirements"] += check_requirements(name, dist.version, dist.requires or [], installed)
    result["requirements"] += check_requirements("hpc-finetune", "(this checkout)", project_requirements(), installed)
    procs = {mod: subprocess.Popen([sys.executable, "-c", stmt], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True) for mod, stmt in IMPORTS.items()}  # all at once: 16 cores
    for mod, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = "import took over 240 s"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        result["imports"][mod] = "ok" if proc.returncode == 0 else (lines[-1] if lines else f"exit {proc.returncode}")
    path.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def build(root: Path, size: str, samples: int) -> int:
    _src_on_path()
    from hpc_finetune.train.assets import build_demo

    info = build_demo(root, size=size, samples=samples)
    print(f"gpu_acceptance: demo model {info['parameters']:,} parameters in {info['model']}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu_acceptance.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("gpu-check")
    sub.add_parser("probe").add_argument("path", type=Path)
    b = sub.add_parser("build")
    b.add_argument("root", type=Path)
    b.add_argument("--size", default=MODEL_SIZE)
    b.add_argument("--samples", type=int, default=SAMPLES)
    r = sub.add_parser("run")
    r.add_argument("--work", default="/tmp/hpcft-gpu-acceptance", help="model, data, runs (large; not the repo)")
    r.add_argument("--out", default=str(REPO / "bench" / "out" / "gpu_acceptance"), help="table, JSON, logs")
    r.add_argument("--budget", type=float, default=480, help="seconds for everything, from --started")
    r.add_argument("--started", type=float, default=0, help="epoch seconds the whole run started (the shell's)")
    r.add_argument("--case-cap", type=float, default=150, help="most seconds one case may take")
    r.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    r.add_argument("--cpu-rehearsal", action="store_true", help="the whole driver on a CPU: tiny model, fp32, "
                                                                 "few steps (its numbers mean nothing)")
    args = p.parse_args(argv)
    if args.cmd == "gpu-check":
        return gpu_check()
    if args.cmd == "probe":
        return probe(args.path)
    if args.cmd == "build":
        return build(args.root, args.size, args.samples)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
