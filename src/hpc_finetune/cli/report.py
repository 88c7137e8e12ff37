"""``hpc-finetune report RUN``: plots (PNG) and a report.md of a run, from its own progress records."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, run directory, or the output folder of `hpc-finetune train`")
    p.add_argument("--out", type=Path, help="report folder (default: RUN_DIR/report)")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.report import build
    from hpc_finetune.runfiles import locate

    out = build(locate(args.run), args.out)
    print(f"report in {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0
