"""A sweep's grid: ``--grid KEY=v1,v2`` (repeatable) and ``--seeds N`` into the list of member settings.

Pure: no config is read here. Each member is a list of ``KEY=VALUE`` overrides, applied like ``--set`` (so every
value passes the same checks as a ``--set`` value; members.py runs them). The grid is the cartesian product of the
keys in the order given (the last key varies fastest), then the seeds.

Refused here, with one line each:
- keys under ``resources.`` or ``launch.``: the members of one Slurm job array share one resource request (nodes,
  GPUs, time, partition) and one launch layout; sweep them as separate sweeps;
- ``name`` and ``output_dir``: each member has its own run directory and output, named by the campaign;
- ``training.seed`` together with ``--seeds`` (say one or the other);
- a key or value given twice, an empty value, more members than one array may hold.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hpc_finetune.errors import UserError, shorten

SOURCE = "--grid"
SHARED_SECTIONS = ("resources", "launch")  # one resource request and launch layout per array
OWN_KEYS = ("name", "output_dir")  # set per member by the campaign
SEED_KEY = "training.seed"
MAX_MEMBERS = 1000  # Slurm's default MaxArraySize is 1001 (indices 0-1000)
MAX_VALUES = 100
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[str, ...]  # raw text, parsed as YAML scalars later (like --set)


def split_values(text: str) -> list[str]:
    """``1e-4,2e-4`` -> ['1e-4', '2e-4']; commas inside [...] or {...} belong to the value (``[q_proj,v_proj]``)."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_axis(item: str) -> Axis:
    if "=" not in item:
        raise UserError(f"expected KEY=V1,V2,..., got {shorten(item, 60)!r}", source=SOURCE)
    key, raw = item.split("=", 1)
    key = key.strip()
    if not KEY.match(key):
        raise UserError(f"malformed key {shorten(key, 60)!r} (e.g. training.learning_rate)", source=SOURCE)
    section = key.split(".")[0]
    if section in SHARED_SECTIONS:
        raise UserError(f"{key}: the members of a sweep are one Slurm job array and share one resource request and "
                        f"launch layout, so {section}.* cannot vary within it; run one sweep per value instead "
                        f"(set it with --set or --nodes/--gpus/--time/--partition)", source=SOURCE)
    if key in OWN_KEYS:
        raise UserError(f"{key}: each member gets its own {key} from the campaign; it cannot be swept",
                        source=SOURCE)
    values = split_values(raw)
    if any(v == "" for v in values):
        raise UserError(f"{key}: empty value in {shorten(raw, 60)!r}", source=SOURCE)
    if len(values) > MAX_VALUES:
        raise UserError(f"{key}: {len(values)} values; at most {MAX_VALUES} per key", source=SOURCE)
    seen = set()
    for v in values:
        if v in seen:
            raise UserError(f"{key}: value {shorten(v, 40)!r} is given twice", source=SOURCE)
        seen.add(v)
    return Axis(key, tuple(values))


def parse_grid(items: list[str], seeds: int | None = None, base_seed: int = 0) -> list[Axis]:
    """The axes of ``--grid`` items (and ``--seeds N``: training.seed = base_seed, base_seed+1, ...)."""
    axes: list[Axis] = []
    for item in items:
        axis = parse_axis(item)
        if any(a.key == axis.key for a in axes):
            raise UserError(f"{axis.key} is given twice; put every value in one --grid {axis.key}=V1,V2",
                            source=SOURCE)
        axes.append(axis)
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {seeds}", source="--seeds")
        if any(a.key == SEED_KEY for a in axes):
            raise UserError(f"{SEED_KEY} is both a --grid key and set by --seeds; use one of them", source=SOURCE)
        axes.append(Axis(SEED_KEY, tuple(str(base_seed + i) for i in range(seeds))))
    if not axes:
        raise UserError("a sweep needs at least one --grid KEY=V1,V2 or --seeds N", source=SOURCE)
    total = 1
    for a in axes:
        total *= len(a.values)
    if total > MAX_MEMBERS:
        raise UserError(f"{total:,} members; one job array holds at most {MAX_MEMBERS:,} here",
                        source=SOURCE)
    return axes


def expand(axes: list[Axis]) -> list[dict[str, str]]:
    """Every member's settings, key -> raw value, in array-index order (the last axis varies fastest)."""
    keys = [a.key for a in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(a.values for a in axes))]
