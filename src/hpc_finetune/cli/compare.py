"""``hpc-finetune compare CAMPAIGN``: a campaign's members side by side, best first."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("campaign", help="campaign id (see `status`) or campaign folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.campaigns import compare
    from hpc_finetune.campaigns.store import open_campaign
    from hpc_finetune.records import Registry
    from hpc_finetune.tracking import refresh

    registry = Registry()
    campaign, records = open_campaign(registry, args.campaign)
    refresh(registry, records)  # states and GPU-hours from one sacct call
    values = {m.run_id: m.values for m in campaign.members}
    trains = [r for r in records if r.kind == "train"]
    metric, rows = compare.rows(trains, values)
    if args.json:
        print(json.dumps({"campaign": campaign.campaign_id, "metric": metric, "members": rows}, indent=1))
    else:
        print(f"campaign {campaign.campaign_id}: {len(trains)} member(s)")
        print(compare.table(metric, rows))
    return 0
