"""The append-only JSON-lines files a job writes (RUN_DIR/attempts.jsonl, OUTPUT/progress.jsonl), read back.

A killed job can leave its last line cut, and a file can hold anything a user put there: only whole lines that
parse as JSON objects count. Login-light (standard library only); used on login and compute nodes alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def read_objects(path: Path | str, *, tail_bytes: Optional[int] = None) -> list[dict]:
    """The JSON objects of ``path``, one per line, in file order; only the last ``tail_bytes`` when given (a cut
    first line is skipped like any other); [] if the file cannot be read."""
    try:
        with Path(path).open("rb") as f:
            if tail_bytes is not None:
                f.seek(max(0, f.seek(0, 2) - tail_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line cut by a killed job
        if isinstance(obj, dict):
            out.append(obj)
    return out
