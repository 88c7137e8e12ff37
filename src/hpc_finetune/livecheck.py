"""The request against the live cluster: partition limits and node hardware read from Slurm in two calls.

`scontrol show partition -o` (every partition, one line each) and `sinfo -N -h -o ...` (every node of every
partition) are read once; all checks work on those two texts, so a check costs two short Slurm RPCs and no more.
Slurm absent (the `local` profile, a laptop): nothing is checked here, and `check` says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Optional

from hpc_finetune.memsize import megabytes
from hpc_finetune.timefmt import format_time, parse_time

SINFO_FORMAT = "%P|%N|%c|%m|%G"


@dataclass
class Partition:
    name: str
    default: bool = False
    state: str = "UP"
    max_nodes: Optional[int] = None
    max_seconds: Optional[int] = None
    total_nodes: int = 0
    nodes: dict[str, dict] = field(default_factory=dict)  # node -> {cpus, mem_mb, gres: {type: count}}

    @property
    def gpus_per_node(self) -> int:
        return max((sum(n["gres"].values()) for n in self.nodes.values()), default=0)

    @property
    def gpu_types(self) -> set[str]:
        return {t for n in self.nodes.values() for t in n["gres"] if t}

    def summary(self) -> str:
        gpus = self.gpus_per_node
        types = ",".join(sorted(self.gpu_types))
        return (f"partition {self.name}: {self.state.lower()}, max {self.max_nodes or 'unlimited'} nodes, "
                f"max time {format_time(self.max_seconds) if self.max_seconds else 'unlimited'}, "
                f"{gpus} GPU(s)/node{' (' + types + ')' if types else ''}")


def _limit(value: str) -> Optional[int]:
    return None if value in ("UNLIMITED", "", "n/a") else int(value)


def _time(value: str) -> Optional[int]:
    if value in ("UNLIMITED", "", "n/a", "NONE"):
        return None
    return parse_time(value)


def parse_gres(text: str) -> dict[str, int]:
    """``gpu:a100:4(S:0-1),gpu:v100:2`` -> {'a100': 4, 'v100': 2}; ``gpu:4`` -> {'': 4}; ``(null)`` -> {}."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = parts[-1]
        kind = parts[1] if len(parts) == 3 else ""
        if count.isdigit():
            out[kind] = out.get(kind, 0) + int(count)
    return out


def parse(scontrol_text: str, sinfo_text: str) -> dict[str, Partition]:
    parts: dict[str, Partition] = {}
    for line in scontrol_text.splitlines():
        kv = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "PartitionName" not in kv:
            continue
        parts[kv["PartitionName"]] = Partition(
            name=kv["PartitionName"], default=kv.get("Default") == "YES", state=kv.get("State", "UP"),
            max_nodes=_limit(kv.get("MaxNodes", "UNLIMITED")), max_seconds=_time(kv.get("MaxTime", "UNLIMITED")),
            total_nodes=int(kv.get("TotalNodes", "0") or 0))
    for line in sinfo_text.splitlines():
        cols = line.strip().split("|")
        if len(cols) != 5:
            continue
        pname, node, cpus, mem, gres = cols
        part = parts.get(pname.rstrip("*"))
        if part is not None:
            part.nodes[node] = {"cpus": int(cpus) if cpus.isdigit() else 0,
                                "mem_mb": megabytes(mem) or 0, "gres": parse_gres(gres)}
    return parts


def read_partitions(timeout: float = 20) -> Optional[dict[str, Partition]]:
    """Live partitions, or None where Slurm is not reachable from here."""
    if not shutil.which("scontrol") or not shutil.which("sinfo"):
        return None
    try:
        sc = subprocess.run(["scontrol", "show", "partition", "-o"], capture_output=True, text=True, timeout=timeout)
        si = subprocess.run(["sinfo", "-N", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True,
                            timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if sc.returncode != 0 or si.returncode != 0:
        return None
    return parse(sc.stdout, si.stdout)


def request_problems(parts: dict[str, Partition], *, partition: Optional[str], nodes: int, gpus: int,
                     gpu_type: Optional[str], seconds: Optional[int], cpus: int, mem: str,
                     add: Callable[[str, str], None]) -> Optional[Partition]:
    """Add one problem per way the request does not fit the live partition. Returns the partition checked."""
    if partition is None:
        part = next((p for p in parts.values() if p.default), None)
        if part is None:
            add("resources.partition", "no partition given and the cluster has no default one; set "
                                       f"resources.partition to one of: {', '.join(sorted(parts))}")
            return None
    else:
        part = parts.get(partition)
        if part is None:
            add("resources.partition (--partition)",
                f"partition {partition!r} does not exist on this cluster; partitions: {', '.join(sorted(parts))}")
            return None
    where = f"partition {part.name!r}"
    if part.state != "UP":
        add("resources.partition (--partition)", f"{where} is {part.state}: jobs will not start")
    most = min(x for x in (part.max_nodes, part.total_nodes or None) if x is not None) \
        if (part.max_nodes or part.total_nodes) else None
    if most is not None and nodes > most:
        add("resources.nodes (--nodes)", f"{nodes} nodes asked, but {where} allows at most {most}")
    if seconds is not None and part.max_seconds is not None and seconds > part.max_seconds:
        add("resources.time (--time)", f"time {format_time(seconds)} is over the limit of {where} "
                                       f"({format_time(part.max_seconds)})")
    if gpus:
        have = part.gpus_per_node
        if have == 0:
            add("resources.gpus_per_node (--gpus)", f"{where} has no GPUs (no gpu GRES on its nodes); use --gpus 0 "
                                                     "or a GPU partition")
        elif gpus > have:
            add("resources.gpus_per_node (--gpus)", f"{gpus} GPUs per node asked, but nodes of {where} have "
                                                     f"at most {have}")
        if gpu_type and part.gpu_types and gpu_type not in part.gpu_types:
            add("gpu_type (cluster profile)", f"GPU type {gpu_type!r} is not on {where}; its GRES types: "
                                              f"{', '.join(sorted(part.gpu_types))}")
    cpu_max = max((n["cpus"] for n in part.nodes.values()), default=0)
    if cpu_max and cpus > cpu_max:
        add("cpus_per_gpu (cluster profile)", f"{cpus} CPUs per task asked, but nodes of {where} have {cpu_max}")
    mem_max = max((n["mem_mb"] for n in part.nodes.values()), default=0)
    if mem_max and (megabytes(mem) or 0) > mem_max:
        add("mem_per_gpu (cluster profile)", f"{mem} of memory per node asked, but nodes of {where} have "
                                             f"{mem_max}M")
    return part
