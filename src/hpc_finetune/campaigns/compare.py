"""`compare CAMPAIGN`: the members side by side, best first (campaigns/ranking.py's one metric), from what each run
wrote (summary.json, progress.jsonl, eval/metrics.json) and its record (state, GPU-hours from sacct, requeues)."""

from __future__ import annotations

from typing import Any, Optional

from hpc_finetune.campaigns import ranking
from hpc_finetune.records import RunRecord


def rows(records: list[RunRecord], values: Optional[dict[str, dict[str, str]]] = None) -> tuple[str, list[dict]]:
    """(metric, one dict per member, best first). ``values``: run id -> the member's grid values."""
    metric, scores, found = ranking.metric_values(records)
    out = []
    for rank_no, i in enumerate(ranking.order(found)[1], 1):
        rec, m, value = records[i], found[i], scores[i]
        out.append({
            "rank": rank_no if value is not None else None, "run_id": rec.run_id, "member": rec.member,
            "values": (values or {}).get(rec.run_id, {}), "state": rec.state, "job_id": rec.job_id,
            "metric": metric, "metric_value": value, "final_loss": m["final_loss"], "best_loss": m["best_loss"],
            "eval_loss": m["eval_loss"], "tokens_per_s": m["tokens_per_s"],
            "step": int(m["step"]) if m["step"] is not None else None,
            "max_steps": int(m["max_steps"]) if m["max_steps"] is not None else None,
            "gpu_hours": round(rec.gpu_hours, 4), "requeues": rec.requeues + rec.auto_requeues,
        })
    return metric, out


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(metric: str, members: list[dict]) -> str:
    keys = list(dict.fromkeys(k for m in members for k in m["values"]))
    head = ["#", "RUN", *(k.rsplit(".", 1)[-1] for k in keys), "STATE", "FINAL LOSS", "BEST LOSS", "EVAL LOSS",
            "TOKENS/S", "STEPS", "GPU-H", "REQUEUES"]
    lines = [head]
    for m in members:
        steps = "-" if m["step"] is None else (f"{m['step']}/{m['max_steps']}" if m["max_steps"] else str(m["step"]))
        lines.append([str(m["rank"] or "-"), m["run_id"], *(m["values"].get(k, "") for k in keys), m["state"],
                      _num(m["final_loss"], ".4f"), _num(m["best_loss"], ".4f"), _num(m["eval_loss"], ".4f"),
                      _num(m["tokens_per_s"], ",.0f"), steps, f"{m['gpu_hours']:.3f}", str(m["requeues"])])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)
    why = ("eval loss (lower is better)" if metric == ranking.EVAL
           else "final train loss (lower is better; not every member has an eval loss)")
    return f"{text}\nranked by {why}"
