"""The stages a chain can hold, one entry each: what command the stage's job runs, its default resources, and what
it needs from the run before it.

A stage is a job of its own, recorded as a run of kind ``<stage>`` (``status``, ``logs``, ``cancel`` follow it),
queued with ``--dependency=afterok:`` on the job before it (``afterany`` for ``select``, which must run however the
sweep's members ended). Its command is built when the job starts, on the node, from the training run it follows
(``Target``): a stage after ``select`` learns which member that is only then (``selection.json``). Results land
where the single commands put them (``OUTPUT/merged``, ``RUN_DIR/eval``, ``RUN_DIR/report``), so ``eval`` and
``report`` find them as if typed by hand.

Adding a stage: one ``Stage`` in ``STAGES`` (its ``order`` places it in a chain). Standard library only: the stage
job imports this module on the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from hpc_finetune.layout import RUN_YAML


@dataclass(frozen=True)
class Target:
    """What a stage's command is built from, at run time."""

    run_dir: Path  # the training run the stage follows (the chosen member after `select`)
    output_dir: Path  # that run's output folder (OUTPUT: checkpoints, final/, merged/)
    chain: tuple[str, ...]  # the stages of this chain, in order (e.g. eval evaluates the merged model after merge)
    campaign_dir: Optional[Path] = None  # the campaign's folder (select writes selection.json there)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    order: int  # position in a chain: prepare < train < select < merge < eval < report
    needs: str  # what it needs from the run before it, in words (help, and errors when it is missing)
    gpu: bool = False  # True: one GPU when the training run had GPUs, on the run's partition; False: CPU only
    command: Optional[Callable[[Target], list[str]]] = None  # `python -u -m` + this; None: not a stage job (train)
    after_any: bool = False  # wait with afterany (run however the jobs before ended) instead of afterok


def _prepare(t: Target) -> list[str]:
    return ["hpc_finetune.train.prepare_data", str(t.run_dir / RUN_YAML)]


def _select(t: Target) -> list[str]:
    return ["hpc_finetune.job.select", str(t.campaign_dir)]


def _merge(t: Target) -> list[str]:
    return ["hpc_finetune", "merge", str(t.output_dir / "final"), "--out", str(t.output_dir / "merged")]


def _eval(t: Target) -> list[str]:
    model = t.output_dir / ("merged" if "merge" in t.chain else "final")
    return ["hpc_finetune.train.evaluate", str(t.run_dir / RUN_YAML), "--model", str(model),
            "--out", str(t.run_dir / "eval")]


def _report(t: Target) -> list[str]:
    return ["hpc_finetune", "report", str(t.run_dir)]


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prepare", "tokenize and pack the data once, on a CPU node, into the shared tokenized cache that the "
                     "training job then finds as a hit", 0, needs="the run config and its data files",
          command=_prepare),
    Stage("train", "the training run itself (a plain run, or a sweep's members)", 1, needs="-", gpu=True),
    Stage("select", "pick the sweep's best member (campaigns.ranking: eval loss when every member has one, else "
                    "the final train loss) and write selection.json for the stages after it", 2,
          needs="the sweep's members, ended however they ended", command=_select, after_any=True),
    Stage("merge", "merge the LoRA adapter into its base model (OUTPUT/merged)", 3,
          needs="the run's final adapter (OUTPUT/final)", command=_merge),
    Stage("eval", "eval loss and answers of the base and the tuned model (the merged one after merge) into "
                  "RUN_DIR/eval", 4, needs="the run's final model", gpu=True, command=_eval),
    Stage("report", "plots and report.md of the run (RUN_DIR/report)", 5, needs="the run's progress records",
          command=_report),
)}
THEN = tuple(n for n, s in STAGES.items() if s.order > STAGES["train"].order and n != "select")  # --then choices


def parse_then(text: str, *, source: str = "--then") -> tuple[str, ...]:
    """``merge,eval`` -> ('merge', 'eval'), in chain order; one clear error for an unknown or repeated name."""
    from hpc_finetune.errors import UserError

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"no stage named; choose from {', '.join(THEN)}", source=source)
    for n in names:
        if n not in THEN:
            raise UserError(f"unknown stage {n!r}; choose from {', '.join(THEN)} (comma-separated, e.g. merge,eval)",
                            source=source)
    if len(set(names)) != len(names):
        raise UserError(f"a stage is named twice in {text!r}", source=source)
    return tuple(sorted(names, key=lambda n: STAGES[n].order))


def chain_of(then: tuple[str, ...], *, prepare: bool, select: bool) -> tuple[str, ...]:
    """Every stage of a chain in order: [prepare] train [select] then..."""
    names = (["prepare"] if prepare else []) + ["train"] + (["select"] if select and then else []) + list(then)
    return tuple(sorted(names, key=lambda n: STAGES[n].order))
