"""A sweep's members: their run ids (the campaign's name and the member's values), their ``--set`` overrides, and
one check of every member's whole config before anything is queued.

A member's run id is ``CAMPAIGN-<short key><value>-...`` (``lr-sweep-learning_rate2e-4-r16``), made of the
characters a run name allows; where that would be longer than a run name may be, or two members would get the same
id, it is ``CAMPAIGN-m<index>`` (the values are in the campaign's member table and in each member's run.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from hpc_finetune.errors import UserError, UserErrors, shorten

MAX_RUN_ID = 64  # runconfig.RUN_NAME: 1-64 characters
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Member:
    index: int  # the array task index
    values: dict[str, str]  # key -> raw value, as given on the command line
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overrides(self) -> list[str]:
        """The member's values as ``--set`` items (applied after the user's own ``--set``)."""
        return [f"{k}={v}" for k, v in self.values.items()]

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def slug(values: dict[str, str]) -> str:
    parts = []
    for key, value in values.items():
        text = _UNSAFE.sub("_", value.strip()).strip("._-") or "x"
        parts.append(f"{short_key(key)}{text}")
    return "-".join(parts)


def member_ids(campaign: str, settings: list[dict[str, str]]) -> list[str]:
    """Run ids for the members, unique and at most MAX_RUN_ID characters, in member order."""
    ids = [f"{campaign}-{slug(v)}" for v in settings]
    if len(set(ids)) != len(ids) or any(len(i) > MAX_RUN_ID for i in ids):
        width = len(str(len(settings) - 1))
        ids = [f"{campaign}-m{i:0{width}d}" for i in range(len(settings))]
    return ids


def make_members(campaign: str, settings: list[dict[str, str]]) -> list[Member]:
    return [Member(index=i, values=v, run_id=rid)
            for i, (v, rid) in enumerate(zip(settings, member_ids(campaign, settings)))]


def check_members(members: list[Member], check: Callable[[Member], Any]) -> list[Any]:
    """``check(member)`` for every member (it loads and resolves the member's whole config and returns it); the
    first member that fails is one line naming the member, its values and the field: nothing is queued."""
    out = []
    for m in members:
        try:
            out.append(check(m))
        except UserErrors as exc:
            first = exc.errors[0]
            raise UserError(f"member {m.index} ({shorten(m.describe(), 120)}): {first}"
                            + (f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else "")) from None
        except UserError as exc:
            raise UserError(f"member {m.index} ({shorten(m.describe(), 120)}): {exc}") from None
    return out
