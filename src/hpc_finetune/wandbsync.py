"""Upload a run's offline wandb data from the login node (where the network is) with wandb's own `wandb sync`.

Every job segment of a run writes one offline folder, ``WANDB_DIR/wandb/offline-run-YYYYMMDD_HHMMSS-RUNID``, all
with the run id kept in OUTPUT/wandb_run_id, so the segments are one wandb run. They are handed to `wandb sync` one
folder per call, oldest first: the history then arrives in step order whatever wandb's own parallelism. wandb marks
each file it uploaded (``run-RUNID.wandb.synced`` next to it) and skips marked files itself; we read that marker
only to say what is left and to make a second `sync` call nothing.

wandb is never imported here: it is run as a program (the ``wandb`` on PATH, else ``python -m wandb``), with the
environment as it is (the API key only ever comes from ``WANDB_API_KEY``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from hpc_finetune.errors import UserError
from hpc_finetune.runfiles import RunFiles
from hpc_finetune.schema import read_yaml

FOLDER = re.compile(r"^offline-run-(\d{8}_\d{6})-([A-Za-z0-9]+)\Z")
INSTALL = "pip install 'hpc-finetune[sync]'  (or: pip install wandb)"


@dataclass
class OfflineFolder:
    path: Path
    started: str  # YYYYMMDD_HHMMSS, from the name
    run_id: str

    @property
    def data_file(self) -> Optional[Path]:
        return next(iter(sorted(self.path.glob("run-*.wandb"))), None)

    @property
    def synced(self) -> bool:
        f = self.data_file
        return f is not None and f.with_suffix(".wandb.synced").exists()


def wandb_dirs(files: RunFiles) -> list[Path]:
    """Where the run's WANDB_DIR can be: the profile's ``caches.wandb_dir`` (default: the run directory) as the job
    set it, and the output directory (where `hpc-finetune train` puts it)."""
    dirs = [files.run_dir]
    try:
        profile = read_yaml(files.run_dir / "profile.yaml")  # bounded, like every config read
        value = str((profile.get("caches") or {}).get("wandb_dir") or "")
        value = value.replace("{run_dir}", str(files.run_dir))
        if value and "{" not in value and "$" not in value:
            dirs.append(Path(value))
    except (UserError, AttributeError):
        pass
    dirs.append(files.output_dir)
    return dirs


def offline_folders(files: RunFiles) -> list[OfflineFolder]:
    """The run's offline folders, each once, oldest first (segments run one after another)."""
    seen: dict[Path, OfflineFolder] = {}
    for d in wandb_dirs(files):
        for p in sorted((d / "wandb").glob("offline-run-*")):
            m = FOLDER.match(p.name)
            if m and p.is_dir():
                seen.setdefault(p.resolve(), OfflineFolder(p, m.group(1), m.group(2)))
    return sorted(seen.values(), key=lambda f: (f.started, f.path.stat().st_mtime))


def wandb_command() -> Optional[list[str]]:
    """How to run wandb's CLI on this node, or None if wandb is not installed (found without importing it)."""
    exe = shutil.which("wandb")
    if exe:
        return [exe]
    if importlib.util.find_spec("wandb") is not None:
        return [sys.executable, "-m", "wandb"]
    return None


def sync_run(files: RunFiles, *, dry_run: bool, wandb: Optional[list[str]], echo=print) -> tuple[int, int]:
    """List (dry run) or upload a run's offline folders; returns (folders uploaded now, folders failed)."""
    folders = offline_folders(files)
    if not folders:
        searched = ", ".join(str(d / "wandb") for d in wandb_dirs(files))
        echo(f"{files.name}: no offline wandb folders (searched {searched})")
        return 0, 0
    ids = sorted({f.run_id for f in folders})
    todo = [f for f in folders if not f.synced]
    echo(f"{files.name}: {len(folders)} offline folder(s), wandb run {', '.join(ids)}; "
         f"{len(folders) - len(todo)} synced, {len(todo)} to sync")
    for f in folders:
        echo(f"  {'synced ' if f.synced else 'to sync'}  {f.path}")
    if len(ids) > 1:
        echo(f"  note: the folders carry {len(ids)} different wandb run ids; each uploads as its own run")
    if not todo:
        return 0, 0
    if dry_run:  # wandb's own view of the same folders, when it is installed here
        if wandb is not None:
            subprocess.run([*wandb, "sync", "--dry-run", *(str(f.path) for f in todo)], env=os.environ.copy())
        return 0, 0
    done = 0
    for f in todo:  # one at a time, oldest first: a later segment never lands before an earlier one
        proc = subprocess.run([*wandb, "sync", str(f.path)], env=os.environ.copy())
        if proc.returncode != 0:
            echo(f"  wandb sync {f.path} failed (exit status {proc.returncode}); later folders not synced, "
                 "run `hpc-finetune sync` again")
            return done, 1
        done += 1
    return done, 0


def check_can_upload(wandb: Optional[list[str]]) -> list[str]:
    if wandb is None:
        raise UserError(f"wandb is not installed on this node; install it with {INSTALL}", source="sync")
    if not os.environ.get("WANDB_API_KEY"):
        raise UserError("WANDB_API_KEY is not set: export it in this shell (sync takes the key from the environment "
                        "only, never from a file, and writes it nowhere)", source="sync")
    return wandb
