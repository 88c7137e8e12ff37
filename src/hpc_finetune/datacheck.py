"""Look at the first records of a data file (login node, no `datasets` import): exists, parses, has the field."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional

ROLES = {"system", "user", "assistant", "tool"}
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")


def first_records(path: Path, n: int = 5) -> list[dict[str, Any]]:
    suffix = path.suffix
    if suffix == ".jsonl":
        out = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
                    if len(out) >= n:
                        break
        return out
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        return list(data[:n]) if isinstance(data, list) else []
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return [row for _, row in zip(range(n), csv.DictReader(f))]
    return []  # parquet / arrow / save_to_disk folders: checked by the training core's loader


def check_data_file(path: Path, data_cfg: Any) -> Optional[str]:
    """None if the file looks right, else one sentence saying what is wrong and how to fix it."""
    if not path.exists():
        return f"{path} does not exist"
    if path.is_dir():
        if not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            return f"{path} is a folder but not a datasets save_to_disk folder"
        return None
    if path.suffix not in SUFFIXES:
        return f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}"
    if path.stat().st_size == 0:
        return f"{path} is empty"
    try:
        records = first_records(path)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{path} does not parse as {path.suffix[1:]}: {exc}"
    if path.suffix in (".jsonl", ".json", ".csv") and not records:
        return f"{path} has no records"
    return check_records(records, data_cfg, str(path))


def check_records(records: list[dict], data_cfg: Any, where: str) -> Optional[str]:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            return f"{where}: record {i + 1} is not an object"
        if data_cfg.format == "text":
            if data_cfg.text_field not in rec:
                return (f"{where}: record {i + 1} has no {data_cfg.text_field!r} column (columns: "
                        f"{', '.join(rec)}); set data.text_field, or data.format: chat for conversations")
            if not isinstance(rec[data_cfg.text_field], str):
                return f"{where}: record {i + 1}: {data_cfg.text_field!r} is not text"
        else:
            msgs = rec.get(data_cfg.messages_field)
            if not isinstance(msgs, list) or not msgs:
                return (f"{where}: record {i + 1} has no {data_cfg.messages_field!r} list of messages "
                        f"(columns: {', '.join(rec)})")
            for m in msgs:
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    return f"{where}: record {i + 1}: each message needs 'role' and 'content'"
                if m["role"] not in ROLES:
                    return (f"{where}: record {i + 1}: unknown role {m['role']!r}; allowed: "
                            f"{', '.join(sorted(ROLES))}")
    return None
