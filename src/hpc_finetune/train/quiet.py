"""Library log lines that mean nothing to our users, filtered at their source (and nothing else from those loggers).

- bitsandbytes 0.50, on CPUs with AVX512-BF16, tries at import to fetch an optional fused CPU 4-bit kernel from the
  hub (``kernels-community/quantization-bitsandbytes``) and logs "Failed to load CPU gemm_4bit_forward from
  kernels-community ..." when it cannot: always on an offline node, and on GPU nodes, where that CPU kernel is
  never used. bitsandbytes then uses its built-in CPU path; nothing is wrong and there is nothing to do.
"""

from __future__ import annotations

import logging

_SILENCED = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def install() -> None:
    """Idempotent; must run before the library is imported (the filter sits on the logger it logs through)."""
    for name, prefixes in _SILENCED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(prefixes))
