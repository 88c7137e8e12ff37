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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional

from hpc_finetune.errors import UserError, shorten
from hpc_finetune.files import write_atomic
from hpc_finetune.states import FAILED, LIVE, State

NO_RESULT = "ended without a result"  # a local job's verdict that a later look may correct


def home() -> Path:
    return Path(os.environ.get("HPC_FINETUNE_HOME") or Path.home() / ".local" / "state" / "hpc-finetune")


MAX_RECORD_BYTES = 16 << 20


class UnreadableRecord(UserError):
    """A run's record.json is missing or corrupt."""


@dataclass
class Segment:
    """One job instance of a run (a submit or a requeue by hand; Slurm's own requeues keep the job id, so they are
    the same segment): what the scheduler says of it. What the job logged about itself are its events
    (RUN_DIR/attempts.jsonl, ``segments.read_events``)."""

    job_id: str
    started_by: str  # submit | requeue | auto-requeue
    submitted: float
    state: State = State.PENDING
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
    state: State = State.PENDING
    reason: str = ""
    requeues: int = 0
    auto_requeues: int = 0
    kind: str = "train"  # the stage: prepare | train | select | merge | eval | report (eval: an `eval --submit` job)
    campaign: str = ""  # the campaign this run belongs to ("" for a plain run; see campaigns/)
    member: Optional[int] = None  # its job-array task index in the campaign's sweep (None: not an array task)
    after: list[str] = field(default_factory=list)  # run ids whose jobs this run's job waits on
    dependency: str = ""  # the exact --dependency= value sbatch got

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
        """The run's record; ``UnreadableRecord`` (a one-line error) if it is missing or corrupt."""
        path = run_dir / "record.json"
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            raise UnreadableRecord(f"run directory {run_dir} has no record.json (was it deleted?)",
                                   source="RUN") from None
        except OSError as exc:
            raise UnreadableRecord(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
        try:
            if len(raw) > MAX_RECORD_BYTES:
                raise ValueError(f"larger than {MAX_RECORD_BYTES // 1024} KiB")
            data = json.loads(raw)
            data["segments"] = [Segment(**{**s, "state": State.parse(s.get("state", State.PENDING))})
                                for s in data.get("segments", [])]
            return cls(**{**data, "state": State.parse(data.get("state", State.PENDING))})
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise UnreadableRecord(f"unreadable run record ({shorten(str(exc), 120)})", source=str(path)) from None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, cluster TEXT, scheduler TEXT, created REAL,
  nodes INTEGER, gpus_per_node INTEGER, time_seconds INTEGER, job_id TEXT, state TEXT, reason TEXT,
  elapsed INTEGER, segments INTEGER, requeues INTEGER, progress TEXT, gpu_hours REAL, campaign TEXT, kind TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
"""


@dataclass(frozen=True)
class IndexRow:
    """One row of the index, by column name (a new column cannot shift the others' values)."""

    run_id: str
    run_dir: str
    cluster: Optional[str] = None
    scheduler: Optional[str] = None
    created: Optional[float] = None
    nodes: Optional[int] = None
    gpus_per_node: Optional[int] = None
    time_seconds: Optional[int] = None
    job_id: Optional[str] = None
    state: Optional[str] = None
    reason: Optional[str] = None
    elapsed: Optional[int] = None  # the last segment's
    segments: Optional[int] = None  # how many
    requeues: Optional[int] = None  # by hand and automatic
    progress: Optional[str] = None  # the trainer's latest progress (JSON)
    gpu_hours: Optional[float] = None
    campaign: Optional[str] = None  # the campaign the run belongs to ("" for a plain run)
    kind: Optional[str] = None  # its stage: prepare, train, select, merge, eval, report

    @classmethod
    def of(cls, rec: "RunRecord", progress: Optional[dict] = None) -> "IndexRow":
        last = rec.segments[-1] if rec.segments else None
        return cls(run_id=rec.run_id, run_dir=rec.run_dir, cluster=rec.cluster, scheduler=rec.scheduler,
                   created=rec.created, nodes=rec.nodes, gpus_per_node=rec.gpus_per_node,
                   time_seconds=rec.time_seconds, job_id=rec.job_id, state=str(rec.state), reason=rec.reason,
                   elapsed=last.elapsed if last else None, segments=len(rec.segments),
                   requeues=rec.requeues + rec.auto_requeues, progress=json.dumps(progress) if progress else None,
                   gpu_hours=round(rec.gpu_hours, 4), campaign=rec.campaign, kind=rec.kind)


_INDEXES = "CREATE INDEX IF NOT EXISTS runs_campaign ON runs (campaign);"  # after the migrations add the column
COLUMNS = tuple(f.name for f in fields(IndexRow))  # the order of _SCHEMA's columns
# Columns added after the first release: (name, SQL type). Older registries gain them when opened.
MIGRATIONS = (("gpu_hours", "REAL"), ("campaign", "TEXT"), ("kind", "TEXT"))


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added after the first release (MIGRATIONS): an older registry gains them when it is opened."""
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for name, kind in MIGRATIONS:
        if name not in have:
            try:
                with db:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:  # another shell opening the old index added it first
                if "duplicate column" not in str(exc):
                    raise


class Registry:
    """The login node's index of runs (sqlite; safe for several shells at once).

    Opened lazily: reading a registry that does not exist yet gives no rows and creates nothing, so `render`,
    `plan`, `check` and rejected inputs leave no file behind; the first write creates it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "registry.sqlite"
        self._db: sqlite3.Connection | None = None
        _check_parent(self.path)

    def _open(self, create: bool) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        if not create and not self.path.exists():
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the run index folder {self.path.parent}: {exc.strerror or exc}",
                            source="HPC_FINETUNE_HOME") from None
        try:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _migrate(db)
            db.execute(_INDEXES)
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, exc) from None
        self._db = db
        return db

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        db = self._open(create=False)
        if db is None:
            return []
        try:
            return list(db.execute(sql, params))
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, exc) from None

    def _write(self, sql: str, rows: Iterable[Any]) -> None:
        db = self._open(create=True)
        assert db is not None
        try:
            with db:
                db.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, exc) from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def upsert(self, rec: RunRecord, progress: dict | None = None) -> None:
        self.insert_many([IndexRow.of(rec, progress)])

    def insert_many(self, rows: Iterable[IndexRow]) -> None:
        self._write(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join(':' + c for c in COLUMNS)})", (asdict(r) for r in rows))

    def rows(self, run_id: str | None = None, last: int | None = None) -> list[sqlite3.Row]:
        """One run; or every run; or every live run plus the ``last`` most recent ones, oldest first."""
        if run_id is not None:
            return self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if last is None:
            return self._query("SELECT * FROM runs ORDER BY created")
        marks = ", ".join("?" * len(LIVE))
        return self._query(
            f"SELECT * FROM runs WHERE state IN ({marks}) OR run_id IN "
            "(SELECT run_id FROM runs ORDER BY created DESC LIMIT ?) ORDER BY created", (*LIVE, last))

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM runs")
        return rows[0][0] if rows else 0

    def live_rows(self) -> list[sqlite3.Row]:
        """Runs whose state may still change: live ones, and local runs judged ended without a result (a later
        look may correct that verdict; see scheduler/local.py)."""
        marks = ", ".join("?" * len(LIVE))
        return self._query(f"SELECT * FROM runs WHERE state IN ({marks}) OR (scheduler = 'local' AND state = ? "
                           "AND reason = ?)", (*LIVE, FAILED, NO_RESULT))

    def exists(self, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def run_dir(self, run_id: str) -> Path:
        rows = self._query("SELECT run_dir FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            known = [r[0] for r in self._query("SELECT run_id FROM runs ORDER BY created DESC LIMIT 5")]
            hint = f"; recent runs: {', '.join(known)}" if known else "; no runs recorded yet"
            raise UserError(f"no run named {shorten(run_id, 60)!r}{hint} (see `hpc-finetune status`)", source="RUN")
        return Path(rows[0][0])


def _check_parent(path: Path) -> None:
    """The index's folder must be (or be creatable as) a folder: one line, not a traceback, if not."""
    probe = path.parent
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise UserError(f"{probe} is a file, so the run index {path} cannot be created there; point "
                            "HPC_FINETUNE_HOME at a folder", source="HPC_FINETUNE_HOME")
    except OSError as exc:
        raise UserError(f"unusable run index path {path}: {exc.strerror or exc}", source="HPC_FINETUNE_HOME") \
            from None


def _unreadable(path: Path, exc: Exception) -> UserError:
    return UserError(f"the run index is not a readable sqlite database ({exc}); move it aside (the runs' own "
                     "record.json files are untouched) and resubmit or re-run status", source=str(path))


def load_record(registry: Registry, run: str) -> RunRecord:
    """A run by id (from the index) or by its run directory path."""
    path = Path(run)
    try:
        by_path = (path / "record.json").is_file()
    except OSError:
        by_path = False
    run_dir = path if by_path else registry.run_dir(run)
    return RunRecord.load(run_dir)


def claim_run_dir(registry: Registry, runs_root: Path, name: str) -> Path:
    """Create and return a new run directory ``name``, ``name-2``, ``name-3``, ...: the first id neither recorded
    nor on disk. ``mkdir`` is atomic, so two submits at once never get the same directory."""
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {runs_root}: {exc.strerror or exc}", source="storage.shared_root") from None
    n = 1
    while True:
        candidate = name if n == 1 else f"{name}-{n}"
        n += 1
        if registry.exists(candidate):
            continue
        try:
            (runs_root / candidate).mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot create {runs_root / candidate}: {exc.strerror or exc}",
                            source="storage.shared_root") from None
        return runs_root / candidate


def next_run_id(registry: Registry, runs_root: Path, name: str) -> str:
    """The id ``claim_run_dir`` would take now (for `render`, `plan` and dry runs: nothing is created)."""
    candidate, n = name, 1
    while registry.exists(candidate) or _exists(runs_root / candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def now() -> float:
    return time.time()
