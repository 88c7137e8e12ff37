"""Before a merge loads anything: which dtype it merges in and whether this machine has the memory for it.

A merge loads the whole base model unquantized (merging into 4-bit weights would round the adapter away), merges and
saves it. In float32 a 70B base needs ~280 GB; in its own dtype (bf16 for nearly every released model) half that.
So the default is the base's own dtype (``torch_dtype``/``dtype`` in its config.json), and a merge that cannot fit
in this machine's available memory is refused up front, with the figure, instead of swapping or being killed.
Login-light: reads config.json and /proc/meminfo only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from hpc_finetune.dtypes import BYTES, FLOATING
from hpc_finetune.errors import UserError

HEADROOM = 1.2  # the loaded model plus the saving buffers and the Python process


def base_dtype(base_dir: Path) -> str:
    """The dtype the base model was released in (config.json), float32 if it does not say."""
    try:
        cfg = json.loads((base_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or cfg.get("text_config", {}).get("torch_dtype")
    return dtype if dtype in FLOATING else "float32"


def available_bytes() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def needed_bytes(base_dir: Path, dtype: str) -> Optional[int]:
    from hpc_finetune.plan import ModelShape

    try:
        params = ModelShape.from_model_dir(base_dir).params
    except UserError:
        return None
    return int(params * BYTES[dtype] * HEADROOM)


def check_memory(base_dir: Path, dtype: str, available: Optional[int] = None) -> None:
    """Raise (one line, with the figures and where to run it) if the merge cannot fit in this machine's memory."""
    need = needed_bytes(base_dir, dtype)
    have = available_bytes() if available is None else available
    if need is None or have is None or need <= have:
        return
    raise UserError(f"merging needs about {need / 1e9:.0f} GB of memory (base {base_dir.name} in {dtype}) but this "
                    f"machine has {have / 1e9:.0f} GB available; run it on a compute node, e.g. "
                    f"`srun --mem={int(need / 1e9) + 8}G hpc-finetune merge RUN`", source="merge")
