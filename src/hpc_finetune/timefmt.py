"""Slurm time limits: parse the formats ``sbatch --time`` accepts, and format seconds back."""

from __future__ import annotations

import re
from functools import lru_cache

from hpc_finetune.errors import UserError

_FORMATS = "M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (for example 90, 01:30:00, 2-00:00:00)"
_RE = re.compile(r"^(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                 r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$")


def parse_time(value: str | int, *, source: str | None = None, field: str | None = None) -> int:
    """Return seconds for a Slurm time string (``UNLIMITED`` is not accepted: clusters cap jobs)."""
    text = str(value).strip()
    m = _RE.match(text)
    if not m:
        raise UserError(f"malformed time {text!r}; use {_FORMATS}", source=source, field=field)
    if m.group("days") is not None:
        days, hours = int(m.group("days")), int(m.group("dh"))
        minutes, seconds = int(m.group("dm") or 0), int(m.group("ds") or 0)
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    else:
        a, b, c = m.group("a"), m.group("b"), m.group("c")
        if c is not None:
            total = int(a) * 3600 + int(b) * 60 + int(c)
        elif b is not None:
            total = int(a) * 60 + int(b)
        else:
            total = int(a) * 60
    if total <= 0:
        raise UserError(f"time {text!r} must be longer than zero", source=source, field=field)
    return total


@lru_cache(maxsize=4096)
def format_time(seconds: int | float | None) -> str:
    """Seconds as Slurm writes them: ``H:MM:SS`` or ``D-HH:MM:SS``."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"


def sbatch_time(seconds: int) -> str:
    """Seconds rounded up to whole minutes in ``D-HH:MM:SS`` form for ``#SBATCH --time``."""
    minutes = -(-int(seconds) // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"
