"""Which member of a campaign is best: one metric, one owner (`compare`, `status`'s "best so far", and the stages'
selector job all use this module).

The metric, lower is better:
- ``eval_loss``: the tuned model's eval loss from `hpc-finetune eval` (RUN_DIR/eval/metrics.json, ``tuned``), else
  the trainer's last evaluation during training (OUTPUT/progress.jsonl, ``kind: eval``);
- else ``train_loss``: the final train loss (OUTPUT/summary.json ``final_loss``: the last logged loss), else, for a
  run that has not finished, the last logged train loss so far.
Members are compared on one metric only: eval_loss when every ranked member has one, else train_loss for all (an
eval loss and a train loss are not comparable numbers). Members without any value rank last, in member order.
Login-light: standard library only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional

from hpc_finetune.jsonlog import read_objects

EVAL, TRAIN = "eval_loss", "train_loss"
MAX_PROGRESS_BYTES = 4 << 20  # the tail of progress.jsonl is plenty for the last entries


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _output_dir(run_dir: Path) -> Path:
    rec = _read_json(run_dir / "record.json") or {}
    return Path(rec.get("output_dir") or run_dir / "output")


def metrics(run_dir: Path | str, output_dir: Path | str | None = None) -> dict[str, Optional[float]]:
    """Every number `compare` shows for one run, from what the run wrote: eval_loss, final_loss (the last logged
    train loss, final or so far), best_loss (the lowest logged), tokens_per_s, step, max_steps."""
    run_dir = Path(run_dir)
    out = Path(output_dir) if output_dir else _output_dir(run_dir)
    progress = read_objects(out / "progress.jsonl", tail_bytes=MAX_PROGRESS_BYTES)
    train = [e for e in progress if e.get("kind", "train") == "train" and _number(e.get("loss")) is not None]
    evals = [e for e in progress if e.get("kind") == "eval" and _number(e.get("eval_loss")) is not None]
    summary = _read_json(out / "summary.json")
    tuned = (_read_json(run_dir / "eval" / "metrics.json") or {}).get("tuned")
    eval_loss = _number(tuned.get("eval_loss")) if isinstance(tuned, dict) else None
    if eval_loss is None and evals:
        eval_loss = _number(evals[-1]["eval_loss"])
    final = _number(summary.get("final_loss")) if summary else None
    if final is None and train:
        final = _number(train[-1]["loss"])
    losses = [_number(e["loss"]) for e in train]
    best = min((x for x in losses if x is not None), default=None)
    if best is None or (final is not None and final < best):
        best = final
    last = summary or (train[-1] if train else {})
    tps = _number(summary.get("tokens_per_s")) if summary else None
    if tps is None and train:
        tps = _number(train[-1].get("tokens_per_s"))
    return {"eval_loss": eval_loss, "final_loss": final, "best_loss": best, "tokens_per_s": tps,
            "step": _number(last.get("step")), "max_steps": _number(last.get("max_steps")),
            "finished": 1.0 if summary else 0.0}


def run_metric(run_dir: Path | str, output_dir: Path | str | None = None) -> tuple[str, Optional[float]]:
    """("eval_loss", value) when the run has an eval loss, else ("train_loss", its final train loss or None): one run
    on its own. To compare runs, use metric_values (their common metric), never this per run."""
    m = metrics(run_dir, output_dir)
    if m["eval_loss"] is not None:
        return EVAL, m["eval_loss"]
    return TRAIN, m["final_loss"]


def common_metric(values: Iterable[dict[str, Optional[float]]]) -> str:
    """eval_loss when every run has one, else train_loss."""
    values = list(values)
    return EVAL if values and all(v.get("eval_loss") is not None for v in values) else TRAIN


def metric_value(m: dict[str, Optional[float]], metric: str) -> Optional[float]:
    return m.get("eval_loss") if metric == EVAL else m.get("final_loss")


def order(values: list[dict[str, Optional[float]]]) -> tuple[str, list[int]]:
    """(metric, indices of ``values`` best first); runs without a value last, in their given order."""
    metric = common_metric(values)
    keyed = [(metric_value(v, metric), i) for i, v in enumerate(values)]
    ranked = sorted((x for x in keyed if x[0] is not None), key=lambda x: (x[0], x[1]))
    return metric, [i for _, i in ranked] + [i for v, i in keyed if v is None]


def metric_values(records: list[Any]) -> tuple[str, list[Optional[float]], list[dict[str, Optional[float]]]]:
    """(the one metric this set of runs is compared by, each run's value under it, each run's metrics()), in the
    order of ``records`` (anything with ``run_dir`` and, optionally, ``output_dir``). The one owner of "the metric
    of a set of runs": select, compare, best and rank all use it, so what they show is what they chose by."""
    found = [metrics(r.run_dir, getattr(r, "output_dir", None)) for r in records]
    metric = common_metric(found)
    return metric, [metric_value(m, metric) for m in found], found


def rank(records: list[Any]) -> list[Any]:
    """``records``, best first, by the one metric."""
    _, idx = order(metric_values(records)[2])
    return [records[i] for i in idx]


def best(records: list[Any]) -> tuple[Optional[Any], str, Optional[float]]:
    """(best record or None, metric, value) among runs that have a value for the common metric."""
    metric, values, found = metric_values(records)
    _, idx = order(found)
    if not idx or values[idx[0]] is None:
        return None, metric, None
    return records[idx[0]], metric, values[idx[0]]
