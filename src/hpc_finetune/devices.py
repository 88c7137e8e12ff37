"""Which GPUs a process may see: the request decides, not whatever the machine happens to have.

One process that sees several GPUs makes transformers wrap the model in ``nn.DataParallel`` (another effective batch,
slower than DDP), and a CPU-only request on a GPU node would still train on a GPU. So:

- a node program starting P processes for G GPUs exposes exactly G devices (Slurm's gres list when Slurm set one,
  cut to G; else ``0..G-1`` on a machine without a scheduler), and none for G = 0;
- a single training process (``hpc-finetune train``, or a 1-process job) sees one device, or none for G = 0;
- processes started by a launcher (accelerate, torchrun: ``LOCAL_RANK`` set) keep the node's list and each uses
  its own ``cuda:LOCAL_RANK``.

Login-light: no torch here (``CUDA_VISIBLE_DEVICES`` must be set before CUDA is initialised anyway).
"""

from __future__ import annotations

from typing import Mapping, Optional

VAR = "CUDA_VISIBLE_DEVICES"


def _entries(current: Optional[str]) -> Optional[list[str]]:
    if current is None:
        return None
    return [d.strip() for d in current.split(",") if d.strip()]


def for_node(gpus: int, current: Optional[str]) -> Optional[str]:
    """CUDA_VISIBLE_DEVICES for a node program that asked for ``gpus`` GPUs; None: leave it as it is."""
    if gpus <= 0:
        return ""
    have = _entries(current)
    if have is None:
        return ",".join(str(i) for i in range(gpus))
    return ",".join(have[:gpus]) if len(have) > gpus else None


def for_process(gpus: Optional[int], environ: Mapping[str, str]) -> Optional[str]:
    """CUDA_VISIBLE_DEVICES for a training process; None: leave it (launched ranks pick cuda:LOCAL_RANK)."""
    if "LOCAL_RANK" in environ:
        return "" if gpus == 0 else None
    if gpus == 0:
        return ""
    have = _entries(environ.get(VAR))
    if have is None:
        return "0"
    return have[0] if len(have) > 1 else None
