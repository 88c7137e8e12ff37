"""A campaign on disk: CAMPAIGN_DIR/campaign.json (the source of truth, beside the runs' own record.json files).

The campaign folder sits among the run directories (RUNS_ROOT/CAMPAIGN), claimed the same atomic way, so a campaign
id is unique among run ids and campaign ids (``name``, ``name-2``, ...). Its members and stage jobs are normal runs
whose records name the campaign (RunRecord.campaign; the registry's ``campaign`` column finds them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from hpc_finetune.errors import UserError, shorten
from hpc_finetune.records import Registry, RunRecord, UnreadableRecord
from hpc_finetune.files import write_atomic

FILE = "campaign.json"
MAX_BYTES = 16 << 20


@dataclass
class CampaignMember:
    index: int
    run_id: str
    values: dict[str, str]


@dataclass
class Campaign:
    campaign_id: str
    name: str
    kind: str  # sweep | chain
    campaign_dir: str
    cluster: str
    scheduler: str
    created: float
    config: str = ""  # the run config it was made from
    grid: list[str] = field(default_factory=list)  # the --grid items as given (and --seeds as training.seed)
    max_parallel: Optional[int] = None
    array_job_id: str = ""  # the sweep's job array
    members: list[CampaignMember] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # stages' own bookkeeping

    @property
    def path(self) -> Path:
        return Path(self.campaign_dir) / FILE

    def save(self) -> None:
        write_atomic(self.path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, campaign_dir: Path) -> "Campaign":
        path = Path(campaign_dir) / FILE
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
            if len(raw) > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES >> 20} MiB")
            data = json.loads(raw)
            data["members"] = [CampaignMember(**m) for m in data.get("members", [])]
            return cls(**data)
        except FileNotFoundError:
            raise UserError(f"{campaign_dir} has no {FILE} (was it deleted?)", source="CAMPAIGN") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"unreadable campaign record ({shorten(str(exc), 120)})", source=str(path)) from None


def campaign_dir_of(registry: Registry, campaign_id: str) -> Optional[Path]:
    """The campaign folder, found from any of its runs (it is their run directories' sibling); None if no run of
    that campaign is recorded."""
    rows = registry.campaign_rows(campaign_id)
    for r in rows:
        candidate = Path(r["run_dir"]).parent / campaign_id
        if (candidate / FILE).is_file():
            return candidate
    return None


def find(registry: Registry, name: str) -> Optional[Campaign]:
    """The campaign ``name`` (its id, or its folder), or None if there is none by that name."""
    path = Path(name)
    try:
        if (path / FILE).is_file():
            return Campaign.load(path)
    except OSError:
        pass
    found = campaign_dir_of(registry, name)
    return Campaign.load(found) if found else None


def is_campaign(registry: Registry, name: str) -> bool:
    """Whether ``name`` means a campaign, for the commands that take a run or a campaign (a run id or run directory
    wins: a campaign id is never a run id, but a path could be either)."""
    if registry.exists(name) or (Path(name) / "record.json").is_file():
        return False
    return bool(registry.campaign_rows(name)) or (Path(name) / FILE).is_file()


def open_campaign(registry: Registry, name: str) -> tuple[Campaign, list[RunRecord]]:
    """The campaign and its runs' records (members in task order, then its other jobs); one line if unknown."""
    campaign = find(registry, name)
    if campaign is None:
        known = [r[0] for r in registry._query(
            "SELECT campaign FROM runs WHERE campaign != '' GROUP BY campaign ORDER BY MAX(created) DESC LIMIT 5")]
        hint = f"; recent campaigns: {', '.join(known)}" if known else "; no campaigns recorded yet"
        raise UserError(f"no campaign named {shorten(name, 60)!r}{hint} (see `hpc-finetune status`)",
                        source="CAMPAIGN")
    records = []
    for r in registry.campaign_rows(campaign.campaign_id):
        try:
            records.append(RunRecord.load(Path(r["run_dir"])))
        except UnreadableRecord:
            continue
    records.sort(key=lambda rec: (rec.member is None, rec.member if rec.member is not None else 0, rec.created))
    return campaign, records
