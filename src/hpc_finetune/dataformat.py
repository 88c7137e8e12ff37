"""What a training data file is, in one place: which suffixes are read (and by which `datasets` loader), the chat
roles, and what a record must hold, with the one sentence a user sees when it does not.

Used by the login node's pre-flight check (``datacheck``, which reads files itself) and by the training core
(``train/data.py``, which reads them with `datasets`), so a bad record is reported the same way on both sides.
Standard library only: imported on login nodes and compute nodes alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

# file suffix -> the `datasets` loader that reads it
LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
SUFFIXES = tuple(LOADERS)
ROLES = frozenset({"system", "user", "assistant", "tool"})


def unsupported_suffix(path: Path) -> Optional[str]:
    """The error for a file whose suffix no loader reads, else None."""
    if path.suffix in LOADERS:
        return None
    return f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}"


def kind(value: Any) -> str:
    """A value's type as a user reads it in a data file (JSON words, not Python's)."""
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def missing_field(subject: str, data_cfg: Any, columns: Iterable[Any]) -> str:
    """``subject`` (a record, or a whole table) lacks the field that ``data.format`` trains on."""
    cols = ", ".join(map(str, columns))
    if data_cfg.format == "text":
        return (f"{subject} has no {data_cfg.text_field!r} column (columns: {cols}); "
                "set data.text_field, or data.format: chat for conversations")
    return f"{subject} has no {data_cfg.messages_field!r} list of messages (columns: {cols})"


def value_problem(value: Any, number: int, data_cfg: Any, columns: Iterable[Any]) -> Optional[str]:
    """What is wrong with record ``number``'s (1-based) training field ``value`` (its text, or its conversation)."""
    if data_cfg.format == "text":
        if not isinstance(value, str):
            return f"record {number}: {data_cfg.text_field!r} is {kind(value)}, not text"
        return None
    if isinstance(value, list) and not value:
        return f"record {number} has an empty conversation"
    if not isinstance(value, list):
        return missing_field(f"record {number}", data_cfg, columns)
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return f"record {number}: each message needs 'role' and 'content'"
        if m["role"] not in ROLES:
            return f"record {number}: unknown role {str(m['role'])[:40]!r}; allowed: {', '.join(sorted(ROLES))}"
        if not isinstance(m["content"], str):
            return f"record {number}: a message's 'content' is {kind(m['content'])}, not text"
    return None


def record_problem(rec: Any, number: int, data_cfg: Any) -> Optional[str]:
    """What is wrong with record ``number`` (1-based, a parsed JSON/CSV/Arrow row) for this data config, or None."""
    if not isinstance(rec, dict):
        return f"record {number} is not an object"
    field = data_cfg.text_field if data_cfg.format == "text" else data_cfg.messages_field
    if field not in rec:
        return missing_field(f"record {number}", data_cfg, rec)
    return value_problem(rec[field], number, data_cfg, rec)
