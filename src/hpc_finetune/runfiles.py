"""What a run left on disk, as `eval`, `report` and `sync` read it: where its folders are, its progress records
(OUTPUT/progress.jsonl, written by the trainer's ProgressCallback) and where its job segments began
(RUN_DIR/attempts.jsonl, written by the node program). Login-light: no training library here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpc_finetune.jsonlog import read_objects
from hpc_finetune.records import Registry, RunRecord, load_record, read_json
from hpc_finetune.job.segments import read_events
from hpc_finetune.states import CONTINUED, Event

PROGRESS = "progress.jsonl"


@dataclass
class RunFiles:
    name: str
    run_dir: Path
    output_dir: Path
    record: Optional[RunRecord] = None

    @property
    def config_path(self) -> Path:
        """The run config as submitted (resolved, absolute paths): RUN_DIR/run.yaml."""
        return self.run_dir / "run.yaml"

    @property
    def summary(self) -> Optional[dict]:
        return read_json(self.output_dir / "summary.json")


def locate(run: str, registry: Optional[Registry] = None) -> RunFiles:
    """A run by id or run directory (a submitted run), or the output folder of `hpc-finetune train`."""
    path = Path(run)
    try:
        train_output = not (path / "record.json").is_file() and path.is_dir() and (path / PROGRESS).is_file()
    except OSError:  # a name too long, a symlink loop: not a folder; the run index decides (one-line error)
        train_output = False
    if train_output:
        return RunFiles(name=path.name if path.name != "output" else path.parent.name, run_dir=path,
                        output_dir=path)
    rec = load_record(registry or Registry(), run)
    return RunFiles(name=rec.run_id, run_dir=Path(rec.run_dir), output_dir=Path(rec.output_dir), record=rec)


def progress_entries(output_dir: Path) -> list[dict]:
    """Every record in OUTPUT/progress.jsonl, in file order (a line cut by a killed job is skipped)."""
    return [e for e in read_objects(Path(output_dir) / PROGRESS) if isinstance(e.get("step"), int)]


def kind_of(entry: dict) -> str:
    """``train`` or ``eval``; records written before entries carried a kind were all training logs."""
    return entry.get("kind") or ("eval" if "eval_loss" in entry and "loss" not in entry else "train")


def by_step(entries: list[dict], kind: str) -> list[dict]:
    """One record per step of ``kind``, in step order. A step logged twice (a segment that failed after logging it
    and was retried from an earlier checkpoint) keeps its last record: the one the run went on from."""
    latest: dict[int, dict] = {}
    for e in entries:
        if kind_of(e) == kind:
            latest[e["step"]] = e
    return [latest[s] for s in sorted(latest)]


@dataclass
class Boundary:
    step: int  # the first segment after the boundary resumed from this step
    why: str  # time limit, preempted, retry after exit status N, requeued by hand


def segment_boundaries(run_dir: Path) -> list[Boundary]:
    """Where each later job segment took over, in order: every segment start after the first, with why the one
    before it ended (an automatic requeue on a signal, a retry after a failure, or a requeue by hand)."""
    out: list[Boundary] = []
    started, ended = False, None
    for e in read_events(run_dir):
        kind = e.get("event")
        if kind == Event.START:
            if started:
                step = e.get("step")
                out.append(Boundary(step=step if isinstance(step, int) else 0, why=_why(ended)))
            started, ended = True, None
        elif kind in CONTINUED or ended is None:
            ended = e
    return out


def _why(ended: Optional[dict]) -> str:
    kind = (ended or {}).get("event")
    if kind == Event.REQUEUED:
        return str(ended.get("reason") or "requeued")
    if kind == Event.RETRYING:
        return f"retry after exit status {ended.get('status')}"
    return "requeued by hand"
