"""Slurm memory sizes (``--mem``): what the cluster profile accepts, in MB, and scaled by a count.

The syntax is sbatch's whole-number form with an optional unit suffix: ``64G``, ``512M``, ``200000`` (no suffix:
megabytes, as sbatch reads it), ``1T``, ``500K``. Slurm's units are binary (``1G`` = 1024M). Standard library only.
"""

from __future__ import annotations

import re
from typing import Optional

SYNTAX = re.compile(r"([0-9]+)([KMGT]?)")  # ASCII digits: sbatch reads no others
HINT = "memory like 64G, 512M or 200000 (MB)"  # what a bad value's error says is allowed
_UNIT_MB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def _split(text: str) -> Optional[tuple[int, str]]:
    m = SYNTAX.fullmatch(text)
    return (int(m.group(1)), m.group(2)) if m else None


def is_valid(text: str) -> bool:
    return _split(text) is not None


def megabytes(text: str) -> Optional[int]:
    """``64G`` -> 65536; None if ``text`` is not a memory size."""
    parts = _split(text)
    return None if parts is None else int(parts[0] * _UNIT_MB[parts[1]])


def scale(text: str, factor: int) -> str:
    """``64G`` x 4 -> ``256G``, in the same unit (``--mem`` per node from a size per GPU)."""
    parts = _split(text)
    if parts is None:
        raise ValueError(f"not a memory size: {text!r} ({HINT})")
    return f"{parts[0] * factor}{parts[1]}"
