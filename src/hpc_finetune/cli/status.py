"""``hpc-finetune status [RUN]``: every run (or one) with state, job, nodes x GPUs, time and progress."""

from __future__ import annotations

import argparse
import json
import sys
import time

from hpc_finetune.records import Registry, load_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="one run id or run directory, or a campaign id (its runs, one row each) "
                                          "(default: all runs, a campaign as one row)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", nargs="?", const=5.0, type=float, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 5) until interrupted")
    p.add_argument("--segments", action="store_true", help="with RUN: list every job segment and why it ended")
    p.add_argument("--last", type=int, default=50, metavar="N",
                   help="show every live run and the N most recent others (default 50)")
    p.add_argument("--all", action="store_true", help="show every recorded run")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.cli.views import segments_text, table
    from hpc_finetune.runstatus import is_campaign_name, status_rows

    registry = Registry()
    as_campaign = args.run is not None and is_campaign_name(registry, args.run)
    while True:
        rows = status_rows(registry, args.run, None if args.all else args.last)
        if args.json:
            text = json.dumps(rows, indent=1)
        else:
            text = table(rows) if rows else "no runs yet: `hpc-finetune submit RUN.yaml` starts one"
            shown = sum(d["members"] + d["stage_jobs"] if d.get("kind") == "campaign" else 1 for d in rows)
            hidden = 0 if args.run or args.all else registry.count() - shown
            if as_campaign and rows:
                from hpc_finetune.campaigns.status import heading

                text = heading(rows) + "\n" + text
            if hidden > 0:
                text += f"\n({hidden:,} older runs not shown: --all, or --last N)"
            if args.run and args.segments:
                text += "\n" + segments_text(load_record(registry, args.run))
        if args.watch:
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"every {args.watch:g}s\n" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
            continue
        print(text)
        return 0
