"""`hpc-finetune sync`: wandb's own `wandb sync` for every offline segment folder of a run, oldest first, once."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conftest import PY, cli, recorded_run

RUN_ID = "a1b2c3d4e5f6"
# as wandb names them: offline-run-YYYYMMDD_HHMMSS-RUNID, one per job segment (the run resumed with the same id)
FOLDERS = ["offline-run-20261126_101500-" + RUN_ID, "offline-run-20261126_111502-" + RUN_ID,
           "offline-run-20261126_121504-" + RUN_ID]

STANDIN = f"""#!{PY}
import json, os, pathlib, sys
with open(os.environ["WANDB_STANDIN_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if len(open(os.environ["WANDB_STANDIN_LOG"]).readlines()) == int(os.environ.get("WANDB_STANDIN_FAIL_CALL", 0)):
    sys.exit(1)  # a failed upload: nothing marked
if sys.argv[1:2] == ["sync"] and "--dry-run" not in sys.argv:
    for p in sys.argv[2:]:  # as wandb does: mark each uploaded .wandb file
        for w in pathlib.Path(p).glob("run-*.wandb"):
            w.with_suffix(".wandb.synced").touch()
"""


def offline_run(tmp_path: Path) -> tuple[Path, list[Path]]:
    run_dir = recorded_run(tmp_path / "runs", "sft", segments=3)
    (run_dir / "output" / "wandb_run_id").write_text(RUN_ID)
    paths = []
    for i, name in enumerate(reversed(FOLDERS)):  # created newest first: the order must come from the names
        p = run_dir / "wandb" / name
        p.mkdir(parents=True)
        (p / f"run-{RUN_ID}.wandb").write_bytes(b":W&B" + bytes(i))
        (p / "files").mkdir()
        paths.append(p)
    return run_dir, list(reversed(paths))


def standin(tmp_path: Path) -> tuple[dict, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "wandb"
    exe.write_text(STANDIN)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "wandb-calls.jsonl"
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", WANDB_STANDIN_LOG=str(log))
    env.pop("WANDB_API_KEY", None)
    return env, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_dry_run_lists_each_segment_folder_once_in_order(home, tmp_path):
    run_dir, paths = offline_run(tmp_path)
    env, log = standin(tmp_path)
    out = cli("sync", "sft", "--dry-run", env=env, check=True).stdout
    listed = [line.split()[-1] for line in out.splitlines() if "offline-run-" in line]
    assert listed == [str(p) for p in paths], out
    assert f"3 offline folder(s), wandb run {RUN_ID}; 0 synced, 3 to sync" in out
    assert calls(log) == [["sync", "--dry-run", *map(str, paths)]]  # wandb's own dry run, nothing uploaded
    assert not list(run_dir.rglob("*.synced"))


def test_sync_uploads_oldest_first_then_is_a_no_op(home, tmp_path):
    run_dir, paths = offline_run(tmp_path)
    env, log = standin(tmp_path)
    proc = cli("sync", "sft", env=env)  # no key in the environment: refused before any upload
    assert proc.returncode == 2 and "WANDB_API_KEY" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert calls(log) == []
    env["WANDB_API_KEY"] = "k" * 40
    cli("sync", "sft", env=env, check=True)
    assert calls(log) == [["sync", str(p)] for p in paths]  # one folder per call, step order; key only in env
    assert all((p / f"run-{RUN_ID}.wandb.synced").exists() for p in paths)
    again = cli("sync", "--all", env=env, check=True).stdout
    assert "3 synced, 0 to sync" in again
    assert len(calls(log)) == len(paths)  # nothing called the second time
    assert "k" * 40 not in "".join(f.read_text(errors="ignore") for f in run_dir.rglob("*") if f.is_file())


def test_a_failed_upload_stops_before_later_segments(home, tmp_path):
    _run_dir, paths = offline_run(tmp_path)
    env, log = standin(tmp_path)
    env.update(WANDB_API_KEY="k", WANDB_STANDIN_FAIL_CALL="2")
    proc = cli("sync", "sft", env=env)
    assert proc.returncode == 1
    assert calls(log) == [["sync", str(paths[0])], ["sync", str(paths[1])]]  # the third never went before the second
    cli("sync", "sft", env=env)
    assert calls(log)[2:] == [["sync", str(paths[1])], ["sync", str(paths[2])]]  # goes on where it stopped


def test_without_wandb_it_says_how_to_install(home, tmp_path, monkeypatch, capsys):
    from hpc_finetune import wandbsync
    from hpc_finetune.cli.main import main

    offline_run(tmp_path)
    monkeypatch.setattr(wandbsync, "wandb_command", lambda: None)
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert main(["sync", "sft"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'hpc-finetune[sync]'" in err and len(err.splitlines()) == 1
    assert main(["sync", "sft", "--dry-run"]) == 0  # the listing needs no wandb
    assert "to sync" in capsys.readouterr().out
