"""Where the shipped templates and cluster profiles are: inside an installed wheel, or in a source checkout."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """``templates`` or ``clusters``: the wheel's ``hpc_finetune/_data/NAME`` or the checkout's top-level ``NAME``."""
    for candidate in (_PKG / "_data" / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"hpc-finetune is installed without its {name}/ folder (looked in {_PKG / '_data'})")
