"""``RUN_DIR/report/``: plots of a run's own progress records and a ``report.md`` summary, made on the login node.

The plots come from OUTPUT/progress.jsonl (one point per logged step, across every job segment) with the steps where
a later segment took over (RUN_DIR/attempts.jsonl) drawn as dashed lines. Every plotted series is written back,
read from the figure's own lines, to ``series.json`` next to the PNGs: what the picture shows, as numbers.

matplotlib is an optional extra of the login node, imported only here and only when a report is made; figures are
drawn with the Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.errors import UserError
from hpc_finetune.files import write_atomic
from hpc_finetune.records import read_json
from hpc_finetune.runfiles import Boundary, RunFiles, by_step, progress_entries, segment_boundaries
from hpc_finetune.schema import read_yaml
from hpc_finetune.timefmt import format_time

INSTALL = "pip install 'hpc-finetune[report]'  (or: pip install matplotlib)"
# (file, [(panel title, [(series label, record kind, record field)])])
PLOTS = [
    ("loss.png", [("loss", [("train loss", "train", "loss"), ("eval loss", "eval", "eval_loss")])]),
    ("training.png", [("learning rate", [("learning rate", "train", "learning_rate")]),
                      ("grad norm", [("grad norm", "train", "grad_norm")]),
                      ("tokens/s", [("tokens/s", "train", "tokens_per_s")])]),
]


def figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(f"matplotlib is not installed on this node; install it with {INSTALL}",
                        source="report") from None
    return Figure


def points(entries: list[dict], kind: str, key: str) -> tuple[list[int], list[float]]:
    rows = [e for e in by_step(entries, kind) if isinstance(e.get(key), (int, float))]
    return [e["step"] for e in rows], [float(e[key]) for e in rows]


def plot(entries: list[dict], boundaries: list[Boundary], out_dir: Path, title: str) -> dict[str, dict]:
    """Write the PNGs that have data; return {file: {series label: {"step": [...], "value": [...]}}} as plotted."""
    Figure = figure_class()
    drawn: dict[str, dict] = {}
    for name, panels in PLOTS:
        panels = [(t, [s for s in series if points(entries, s[1], s[2])[0]]) for t, series in panels]
        panels = [(t, series) for t, series in panels if series]
        if not panels:
            continue
        fig = Figure(figsize=(8, 3.2 * len(panels)), dpi=90, layout="constrained")
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (panel, series) in zip(axes, panels):
            for label, kind, key in series:
                steps, values = points(entries, kind, key)
                ax.plot(steps, values, label=label, marker="o" if kind == "eval" else None, markersize=4)
            for i, b in enumerate(boundaries, 1):
                ax.axvline(b.step, color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"segment {i + 1}: {b.why}", (b.step, 1), xycoords=("data", "axes fraction"),
                            xytext=(3, -3), textcoords="offset points", va="top", fontsize=7, color="dimgrey",
                            rotation=90)
            ax.set_ylabel(panel)
            ax.grid(alpha=0.3)
            if len(series) > 1:
                ax.legend(loc="upper right")
        axes[-1].set_xlabel("optimizer step")
        axes[0].set_title(title)
        fig.savefig(out_dir / name)
        drawn[name] = {line.get_label(): {"step": [int(x) for x in line.get_xdata()],
                                          "value": [float(y) for y in line.get_ydata()]}
                       for ax in axes for line in ax.get_lines() if not line.get_label().startswith("_")}
    return drawn


def build(files: RunFiles, out_dir: Optional[Path] = None) -> Path:
    """Make the report folder (default RUN_DIR/report); returns it. A run still going gets what exists so far."""
    out_dir = out_dir or files.run_dir / "report"
    figure_class()  # say how to install matplotlib before anything is written
    entries = progress_entries(files.output_dir)
    boundaries = segment_boundaries(files.run_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the report folder {out_dir}: {exc.strerror or exc}", source="report") from None
    drawn = plot(entries, boundaries, out_dir, files.name) if entries else {}
    series = {"plots": drawn, "segment_boundaries": [{"step": b.step, "why": b.why} for b in boundaries]}
    write_atomic(out_dir / "series.json", json.dumps(series, indent=1) + "\n")
    write_atomic(out_dir / "report.md", markdown(files, entries, boundaries, drawn))
    return out_dir


# --- report.md -----------------------------------------------------------------------------------------------------
CONFIG_ROWS = ["model.path", "method", "lora.r", "lora.alpha", "data.train_file", "data.eval_file",
               "data.eval_fraction", "data.format", "training.max_steps", "training.num_train_epochs",
               "training.learning_rate", "training.lr_scheduler_type", "training.per_device_train_batch_size",
               "training.gradient_accumulation_steps", "training.max_length", "training.packing",
               "training.precision", "launch.strategy", "eval.prompts_file"]


def _get(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _num(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}g}" if isinstance(v, float) else ("" if v is None else str(v))


def markdown(files: RunFiles, entries: list[dict], boundaries: list[Boundary], drawn: dict) -> str:
    rec, summary = files.record, files.summary
    lines = [f"# {files.name}", "", f"Report made {time.strftime('%Y-%m-%d %H:%M:%S')} from `{files.run_dir}`.", ""]
    if rec is not None:
        lines += [f"State: **{rec.state}**" + (f" ({rec.reason})" if rec.reason else ""), ""]
    try:
        cfg = read_yaml(files.config_path)  # bounded, like every config read
    except UserError:
        cfg = {}
    if cfg:
        lines += ["## Config", "", "| field | value |", "|---|---|"]
        uses_lora = cfg.get("method") != "full"
        for key in CONFIG_ROWS:
            value = _get(cfg, key)
            if value is not None and (uses_lora or not key.startswith("lora.")):
                lines.append(f"| {key} | `{value}` |")
        lines.append("")
    if rec is not None:
        gpus = rec.nodes * rec.gpus_per_node
        wall = sum(s.elapsed or 0 for s in rec.segments)
        how = "sacct's elapsed x GPUs of every job" if rec.scheduler == "slurm" else "wall time x GPUs"
        lines += ["## Resources and time", "",
                  f"- cluster `{rec.cluster}` ({rec.scheduler}): {rec.nodes} node(s) x {rec.gpus_per_node} GPU(s), "
                  f"{rec.processes_per_node} process(es) per node, time limit {format_time(rec.time_seconds)}",
                  f"- wall time (all segments): {format_time(wall)}",
                  f"- GPU-hours: {rec.gpu_hours:.2f} ({how})" if gpus else "- GPU-hours: 0 (CPU only)", "",
                  "## Segments", "", "| # | job | started by | state | elapsed | reason |", "|---|---|---|---|---|---|"]
        for i, s in enumerate(rec.segments, 1):
            lines.append(f"| {i} | {s.job_id} | {s.started_by} | {s.state} | "
                         f"{format_time(s.elapsed) if s.elapsed is not None else ''} | {s.reason} |")
        lines.append("")
    if boundaries:
        lines += ["Job segments took over at (dashed lines in the plots):", ""]
        lines += [f"- step {b.step}: {b.why}" for b in boundaries]
        lines.append("")
    lines += ["## Final metrics", ""]
    train = by_step(entries, "train")
    evals = by_step(entries, "eval")
    last = summary or (train[-1] if train else {})
    if not last:
        lines += ["No progress recorded yet.", ""]
    else:
        lines += [f"- step: {last.get('step')} of {last.get('max_steps')}" + ("" if summary else " (still going)"),
                  f"- last train loss: {_num(train[-1].get('loss') if train else last.get('final_loss'))}"]
        if evals:
            lines.append(f"- last eval loss: {_num(evals[-1].get('eval_loss'))} (step {evals[-1]['step']})")
        if last.get("tokens_per_s") is not None:
            lines.append(f"- tokens/s: {_num(last.get('tokens_per_s'), 6)}")
        lines.append("")
    metrics = read_json(files.run_dir / "eval" / "metrics.json")
    if isinstance(metrics, dict) and metrics:
        lines += ["## Eval (`hpc-finetune eval`)", "", "| model | eval loss | perplexity |", "|---|---|---|"]
        for which in ("base", "tuned"):
            m = metrics.get(which) if isinstance(metrics.get(which), dict) else {}
            lines.append(f"| {which} | {_num(m.get('eval_loss'))} | {_num(m.get('perplexity'))} |")
        lines.append("")
    if drawn:
        lines += ["## Plots", ""] + [f"![{Path(name).stem}]({name})" for name in drawn] + [""]
    samples = _samples(files.run_dir / "eval" / "samples.jsonl", 5)
    if samples:
        lines += ["## Eval samples", ""]
        for s in samples:
            lines += [f"**Prompt:** `{_one_line(s.get('prompt'))}`", "", f"- base: `{_one_line(s.get('base'))}`",
                      f"- tuned: `{_one_line(s.get('tuned'))}`", ""]
    return "\n".join(lines)


def _samples(path: Path, limit: int) -> list[dict]:
    try:
        rows = path.read_text(encoding="utf-8").splitlines()[:limit]
    except OSError:
        return []
    out = []
    for row in rows:
        try:
            sample = json.loads(row)
        except ValueError:
            continue
        if isinstance(sample, dict):
            out.append(sample)
    return out


def _one_line(text: Any, limit: int = 160) -> str:
    text = " ".join(str(text or "").split()).replace("`", "'")
    return text if len(text) <= limit else text[:limit - 3] + "..."
