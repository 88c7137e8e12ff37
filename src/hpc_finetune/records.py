"""Run records: the run directory on shared storage (source of truth) and a small index on the login node.

RUN_DIR/record.json holds the run's identity and the history of its job segments (id, how it started, how it
ended). The index (``$HPC_FINETUNE_HOME/registry.sqlite``, default ``~/.local/state/hpc-finetune``) lists every run
with its last known state, so that ``status`` over thousands of runs reads one small file and asks the scheduler
only about the runs that may still be live.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from hpc_finetune.errors import UserError
from hpc_finetune.states import LIVE


def home() -> Path:
    return Path(os.environ.get("HPC_FINETUNE_HOME") or Path.home() / ".local" / "state" / "hpc-finetune")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class Segment:
    job_id: str
    started_by: str  # submit | requeue | auto-requeue
    submitted: float
    state: str = "pending"
    reason: str = ""
    elapsed: Optional[int] = None
    nodelist: str = ""
    gpu_seconds: Optional[float] = None  # elapsed x GPUs of every instance of this job (the scheduler's figure)


@dataclass
class RunRecord:
    run_id: str
    name: str
    cluster: str
    scheduler: str
    run_dir: str
    output_dir: str
    created: float
    nodes: int
    gpus_per_node: int
    processes_per_node: int
    time_seconds: int
    segments: list[Segment] = field(default_factory=list)
    state: str = "pending"
    reason: str = ""
    requeues: int = 0
    auto_requeues: int = 0

    @property
    def job_id(self) -> str:
        return self.segments[-1].job_id if self.segments else ""

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / "record.json"

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of every job of the run: the scheduler's elapsed x GPUs (Slurm: from sacct, every requeued
        instance counted), else the segment's elapsed time x the GPUs it asked for (local runs: wall time)."""
        total = 0.0
        for seg in self.segments:
            if seg.gpu_seconds is not None:
                total += seg.gpu_seconds
            elif seg.elapsed:
                total += seg.elapsed * self.nodes * self.gpus_per_node
        return total / 3600

    def save(self) -> None:
        write_atomic(self.path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> "RunRecord":
        data = json.loads((run_dir / "record.json").read_text())
        data["segments"] = [Segment(**s) for s in data.get("segments", [])]
        return cls(**data)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, cluster TEXT, scheduler TEXT, created REAL,
  nodes INTEGER, gpus_per_node INTEGER, time_seconds INTEGER, job_id TEXT, state TEXT, reason TEXT,
  elapsed INTEGER, segments INTEGER, requeues INTEGER, progress TEXT, gpu_hours REAL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
"""
COLUMNS = ("run_id", "run_dir", "cluster", "scheduler", "created", "nodes", "gpus_per_node", "time_seconds",
           "job_id", "state", "reason", "elapsed", "segments", "requeues", "progress", "gpu_hours")
# Columns added after the first release: (name, SQL type). Older registries gain them when opened.
MIGRATIONS = (("gpu_hours", "REAL"),)


class Registry:
    """The login node's index of runs (sqlite; safe for several shells at once)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "registry.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        with self.db:
            for name, kind in MIGRATIONS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    def upsert(self, rec: RunRecord, progress: dict | None = None) -> None:
        last = rec.segments[-1] if rec.segments else None
        row = (rec.run_id, rec.run_dir, rec.cluster, rec.scheduler, rec.created, rec.nodes, rec.gpus_per_node,
               rec.time_seconds, rec.job_id, rec.state, rec.reason, last.elapsed if last else None,
               len(rec.segments), rec.requeues + rec.auto_requeues, json.dumps(progress) if progress else None,
               round(rec.gpu_hours, 4))
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(COLUMNS))})", row)

    def insert_many(self, rows: Iterable[tuple]) -> None:
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})", rows)

    def rows(self, run_id: str | None = None, last: int | None = None) -> list[sqlite3.Row]:
        """One run; or every run; or every live run plus the ``last`` most recent ones, oldest first."""
        if run_id is not None:
            return list(self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)))
        if last is None:
            return list(self.db.execute("SELECT * FROM runs ORDER BY created"))
        marks = ", ".join("?" * len(LIVE))
        return list(self.db.execute(
            f"SELECT * FROM runs WHERE state IN ({marks}) OR run_id IN "
            "(SELECT run_id FROM runs ORDER BY created DESC LIMIT ?) ORDER BY created", (*LIVE, last)))

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def live_rows(self) -> list[sqlite3.Row]:
        marks = ", ".join("?" * len(LIVE))
        return list(self.db.execute(f"SELECT * FROM runs WHERE state IN ({marks})", tuple(LIVE)))

    def exists(self, run_id: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone())

    def run_dir(self, run_id: str) -> Path:
        row = self.db.execute("SELECT run_dir FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created DESC LIMIT 5")]
            hint = f"; recent runs: {', '.join(known)}" if known else "; no runs recorded yet"
            raise UserError(f"no run named {run_id!r}{hint} (see `hpc-finetune status`)", source="RUN")
        return Path(row[0])


def load_record(registry: Registry, run: str) -> RunRecord:
    """A run by id (from the index) or by its run directory path."""
    path = Path(run)
    run_dir = path if (path / "record.json").is_file() else registry.run_dir(run)
    try:
        return RunRecord.load(run_dir)
    except FileNotFoundError:
        raise UserError(f"run directory {run_dir} has no record.json (was it deleted?)", source="RUN") from None


def new_run_id(registry: Registry, runs_root: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first id neither recorded nor on disk."""
    candidate, n = name, 1
    while registry.exists(candidate) or (runs_root / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def now() -> float:
    return time.time()
