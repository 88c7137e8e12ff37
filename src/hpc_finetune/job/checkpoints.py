"""Which checkpoints in an output directory are complete (login-light: used by the trainer and by `status`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

_CKPT = re.compile(r"^checkpoint-(\d+)\Z")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
           "model.safetensors.index.json", "pytorch_model.bin.index.json")


def is_complete(ckpt: Path) -> bool:
    """Trainer state, optimizer state and weights all present (a DeepSpeed checkpoint keeps both in global_step*/)."""
    if not (ckpt / "trainer_state.json").is_file():
        return False
    has_weights = any((ckpt / w).is_file() and (ckpt / w).stat().st_size > 0 for w in WEIGHTS)
    has_optimizer = (ckpt / "optimizer.pt").is_file() and (ckpt / "optimizer.pt").stat().st_size > 0
    deepspeed = any(p.is_dir() and any(p.glob("*optim_states.pt")) for p in ckpt.glob("global_step*"))
    fsdp = any(p.is_dir() for p in ckpt.glob("optimizer_0*")) and any(p.is_dir() for p in ckpt.glob("pytorch_model_fsdp_0*"))
    return (has_weights and has_optimizer) or deepspeed or fsdp or (has_weights and deepspeed)


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = []
    for p in output_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def last_complete(output_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint; half-written newer ones are skipped (and left on disk)."""
    for _step, path in reversed(checkpoints(output_dir)):
        if is_complete(path):
            return path
    return None
