"""Look at a data file on the login node (no `datasets` import): exists, parses, has the field, right types.

By default the first records are read (bounded in bytes, so a huge file or one giant line costs little), and the
file's format is confirmed by its magic bytes (a text file named ``.parquet`` is caught here, not on the node).
``full=True`` (``check --full``) reads every record, with a progress line on a terminal for big files; a format
whose reader is not installed here is reported as not checked.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

from hpc_finetune.dataformat import record_problem, unsupported_suffix

SAMPLE = 5  # records read by default
MAX_LINE = 64 << 20  # one JSONL record / CSV row larger than this is not a training sample
PREVIEW_BYTES = 8 << 20  # the default look at a .json array reads at most this much
PROGRESS_BYTES = 64 << 20  # files this big show a progress line with --full (on a terminal)
PARQUET_MAGIC = b"PAR1"
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"  # datasets' .arrow files are Arrow IPC streams


class DataProblem(ValueError):
    """A record or the file itself is not what training needs (one sentence)."""


def _jsonl(f: io.BufferedReader) -> Iterator[Any]:
    n = 0
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE:
            raise DataProblem(f"line {n} is longer than {MAX_LINE >> 20} MiB")
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise DataProblem(f"line {n} is not JSON: {exc}") from None


def _json_preview(path: Path, n: int) -> list[Any]:
    """The first ``n`` elements of a JSON array (or of its ``data`` list) from at most PREVIEW_BYTES."""
    with path.open("rb") as f:
        raw = f.read(PREVIEW_BYTES + 1)
    text = raw.decode("utf-8", errors="strict") if len(raw) <= PREVIEW_BYTES else \
        raw[:PREVIEW_BYTES].decode("utf-8", errors="ignore")
    if len(raw) <= PREVIEW_BYTES:
        return _json_records(json.loads(text))[:n]
    dec, pos, out = json.JSONDecoder(), 0, []
    stripped = text.lstrip()
    if not stripped.startswith("["):
        raise DataProblem(f"larger than {PREVIEW_BYTES >> 20} MiB and not a JSON array: use .jsonl (one record a "
                          "line), or `check --full` to read it whole")
    pos = len(text) - len(stripped) + 1
    while len(out) < n:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            obj, pos = dec.raw_decode(text, pos)
        except ValueError as exc:
            raise DataProblem(f"does not parse as JSON: {exc}") from None
        out.append(obj)
    return out


def _json_records(data: Any) -> list[Any]:
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise DataProblem("is JSON but not a list of records (nor {\"data\": [...]})")
    return data


def _csv(f: io.TextIOBase) -> Iterator[dict]:
    reader = csv.DictReader(f)
    try:
        yield from reader
    except csv.Error as exc:
        raise DataProblem(f"row {reader.line_num}: {exc}") from None


def _magic_problem(path: Path) -> Optional[str]:
    """A binary format's magic bytes, so that a misnamed file is caught before it reaches a node."""
    with path.open("rb") as f:
        head = f.read(8)
        if path.suffix == ".parquet":
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4))
            tail = f.read(4)
            if not (head.startswith(PARQUET_MAGIC) and tail == PARQUET_MAGIC):
                return "is not a Parquet file (no PAR1 magic bytes): is it misnamed?"
        elif path.suffix == ".arrow" and not head.startswith((ARROW_FILE_MAGIC, ARROW_STREAM_MAGIC)):
            return "is not an Arrow file (no Arrow magic bytes): is it misnamed?"
    return None


def records(path: Path, limit: Optional[int]) -> Iterator[Any]:
    """Records of a .jsonl/.json/.csv file: the first ``limit`` (bounded reading), or all (``limit=None``)."""
    suffix = path.suffix
    if suffix == ".jsonl":
        with path.open("rb") as f:
            for i, rec in enumerate(_jsonl(f)):
                if limit is not None and i >= limit:
                    return
                yield rec
    elif suffix == ".json":
        if limit is not None:
            yield from _json_preview(path, limit)
        else:
            yield from _json_records(json.loads(path.read_bytes()))
    elif suffix == ".csv":
        csv.field_size_limit(MAX_LINE)
        with path.open(newline="", encoding="utf-8") as f:
            for i, rec in enumerate(_csv(f)):
                if limit is not None and i >= limit:
                    return
                yield rec


def check_data_file(path: Path, data_cfg: Any, *, full: bool = False) -> tuple[Optional[str], str]:
    """(None or one sentence saying what is wrong and how to fix it, a note on how much was checked)."""
    try:
        return _check(path, data_cfg, full)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}", ""


def _check(path: Path, data_cfg: Any, full: bool) -> tuple[Optional[str], str]:
    if not path.exists():
        return f"{path} does not exist", ""
    if path.is_dir():
        if not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            return f"{path} is a folder but not a datasets save_to_disk folder", ""
        return None, f"{path}: a save_to_disk folder, read by the training core"
    unsupported = unsupported_suffix(path)
    if unsupported:
        return unsupported, ""
    if not path.is_file():
        return f"{path} is not a regular file", ""
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty", ""
    if path.suffix in (".parquet", ".arrow"):
        bad = _magic_problem(path)
        if bad:
            return f"{path} {bad}", ""
        if not full:
            return None, f"{path}: {path.suffix[1:]} file, records read by the training core (check --full reads " \
                         "them here)"
        return _full_columnar(path, data_cfg, size)
    count = 0
    progress = _Progress(path, size) if full else None
    try:
        for i, rec in enumerate(records(path, None if full else SAMPLE)):
            problem = record_problem(rec, i + 1, data_cfg)
            if problem:
                return f"{path}: {problem}", ""
            count += 1
            if progress is not None and count % 1000 == 0:
                progress.update(count)
    except (DataProblem, ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"{path} does not parse as {path.suffix[1:]}: {exc}", ""
    finally:
        if progress is not None:
            progress.done(count)
    if count == 0:
        return f"{path} has no records", ""
    how = f"all {count:,} records" if full else f"the first {count} record(s) (check --full reads every one)"
    return None, f"checked {how} of {path}"


class _Progress:
    """A one-line progress display on a terminal for big files (nothing otherwise)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.on = size >= PROGRESS_BYTES and sys.stderr.isatty()

    def update(self, count: int) -> None:
        if self.on:
            sys.stderr.write(f"\rchecking {self.path.name}: {count:,} records")
            sys.stderr.flush()

    def done(self, count: int) -> None:
        if self.on:
            sys.stderr.write(f"\rchecking {self.path.name}: {count:,} records, done\n")


def _full_columnar(path: Path, data_cfg: Any, size: int) -> tuple[Optional[str], str]:
    """Every record of a Parquet or Arrow file, if pyarrow is installed here; else a note that it was not read."""
    try:
        import pyarrow as pa  # only for `check --full`: not a login-time import
        import pyarrow.parquet as pq
    except ImportError:
        return None, f"{path}: pyarrow is not installed on this node, so its records were not read (the " \
                     "training core reads them)"
    progress = _Progress(path, size)
    count = 0
    try:
        if path.suffix == ".parquet":
            batches = pq.ParquetFile(str(path)).iter_batches(batch_size=1000)
        else:
            with path.open("rb") as f:
                head = f.read(6)
            source = pa.memory_map(str(path))
            reader = pa.ipc.open_file(source) if head == ARROW_FILE_MAGIC else pa.ipc.open_stream(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) \
                if head == ARROW_FILE_MAGIC else iter(reader)
        for batch in batches:
            for rec in batch.to_pylist():
                count += 1
                problem = record_problem(rec, count, data_cfg)
                if problem:
                    return f"{path}: {problem}", ""
            progress.update(count)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"{path} does not parse as {path.suffix[1:]}: {str(exc).splitlines()[0] if str(exc) else exc}", ""
    finally:
        progress.done(count)
    if count == 0:
        return f"{path} has no records", ""
    return None, f"checked all {count:,} records of {path}"

