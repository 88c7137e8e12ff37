"""The `select` stage's job: pick a sweep's best member, say by which metric, and write it down for the stages after.

``python -m hpc_finetune.job.select CAMPAIGN_DIR`` runs on a CPU node once every member has ended, however it
ended (``--dependency=afterany:ARRAY_JOB``: ``afterok`` on an array never fires once one task fails). Candidates are
the members with a final model (``OUTPUT/final``); among them the best is the lowest by campaigns.ranking's one
metric: the eval loss when every candidate has one, else the final train loss. It writes
``CAMPAIGN_DIR/selection.json`` (run_id, run_dir, output_dir, metric, value, and every candidate's value under that
same metric, so the chosen value is the candidates' lowest; a candidate's eval loss is added, as ``eval_loss``, when
the choice is by train loss), which the
stages after it read when they start (job/stagejob.py), prints the same, and exits 1 if no member has a final model (the
stages after it are then cancelled by Slurm, and `status` shows them as "skipped: select failed").
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpc_finetune.layout import default_output_dir
from hpc_finetune.job.stagejob import SELECTION  # the file's name has one owner: the stage jobs that read it


@dataclass
class Candidate:
    run_id: str
    run_dir: str
    output_dir: str


def members(campaign_dir: Path) -> list[Candidate]:
    """The campaign's members, in task order, from campaign.json (their run directories are its siblings)."""
    data = json.loads((campaign_dir / "campaign.json").read_text())
    out = []
    for m in sorted(data.get("members", []), key=lambda m: m.get("index", 0)):
        run_dir = campaign_dir.parent / m["run_id"]
        try:
            rec = json.loads((run_dir / "record.json").read_text())
            output_dir = rec.get("output_dir") or str(default_output_dir(run_dir))
        except (OSError, ValueError):
            output_dir = str(default_output_dir(run_dir))
        out.append(Candidate(m["run_id"], str(run_dir), output_dir))
    return out


def select(campaign_dir: Path) -> tuple[Optional[dict], list[str]]:
    """(the selection written to selection.json, or None if no member has a final model; lines to print)."""
    from hpc_finetune.campaigns.ranking import EVAL, metric_values, order

    everyone = members(campaign_dir)
    finished = [c for c in everyone if (Path(c.output_dir) / "final").is_dir()]
    lines = [f"select: {len(finished)} of {len(everyone)} member(s) have a final model"]
    for c in everyone:
        if c not in finished:
            lines.append(f"  {c.run_id}: no final model ({c.output_dir}/final), not a candidate")
    # one reading of the candidates: the values shown and written are the ones the choice is made by
    metric, values, found = metric_values(finished) if finished else ("", [], [])
    idx = order(found)[1] if finished else []
    if not idx or values[idx[0]] is None:
        why = "no member has a final model" if not finished else \
            f"none of the {len(finished)} member(s) with a final model logged a loss"
        lines.append(f"select: {why}: no member to follow; the stages after this one will not run")
        return None, lines
    chosen, value = finished[idx[0]], values[idx[0]]
    candidates = {}
    for c, v, m in zip(finished, values, found):
        entry: dict = {"metric": metric, "value": v}
        line = f"  {c.run_id}: {metric} {v:.4f}" if v is not None else f"  {c.run_id}: {metric} -"
        if metric != EVAL and m["eval_loss"] is not None:  # extra, labelled: not what the choice is made by
            entry["eval_loss"] = m["eval_loss"]
            line += f" (eval_loss {m['eval_loss']:.4f})"
        candidates[c.run_id] = entry
        lines.append(line + ("   <- best" if c is chosen else ""))
    selection = {"run_id": chosen.run_id, "run_dir": chosen.run_dir, "output_dir": chosen.output_dir,
                 "metric": metric, "value": value, "lower_is_better": True, "candidates": candidates}
    lines.append(f"select: {chosen.run_id} by {metric} {value:.4f} (lower is better; "
                 f"{'eval loss: every candidate has one' if metric == 'eval_loss' else 'final train loss: not every candidate has an eval loss'})")
    return selection, lines


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hpc_finetune.job.select CAMPAIGN_DIR", file=sys.stderr)
        return 2
    campaign_dir = Path(args[0])
    try:
        selection, lines = select(campaign_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"select: error: cannot read the campaign in {campaign_dir}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines), flush=True)
    if selection is None:
        return 1
    path = campaign_dir / SELECTION
    tmp = path.with_name(f".{SELECTION}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(selection, indent=1) + "\n")
    os.replace(tmp, path)  # the stages after it read a whole file or none
    print(f"select: wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
