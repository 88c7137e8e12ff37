"""Stages after a sweep's members, on the local profile: --follow best (a select job, run however the members
ended, then merge of the chosen member, read at run time) and --follow every (a merge per member).

The members here are made the way a sweep makes them (one held run per member through the run service, listed in
campaign.json); the sweep command itself is the sweeps branch's. The metric is campaigns/ranking.py's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import cli, wait_for

pytest.importorskip("hpc_finetune.campaigns.ranking", reason="campaigns/ranking.py comes with the sweeps branch")
pytestmark = pytest.mark.train

FAIL = f"{Path(__file__).resolve().parent / 'failing_step.py'}:FailAtStep"


def members_and_stages(demo: Path, follow: str, member_sets: list[list[str]]):
    from hpc_finetune.campaigns.chain import StageOptions, queue_stages, save_program
    from hpc_finetune.jobspec import runs_root
    from hpc_finetune.records import Registry, claim_run_dir
    from hpc_finetune.runs import NewRun, RunRequest, create_run, load_request, prepare_at

    registry = Registry()
    profile, base_cfg = load_request(RunRequest(config=demo / "run.yaml", sets=["training.max_steps=4", "training.logging_steps=2"]))
    root = runs_root(profile)
    campaign_dir = claim_run_dir(registry, root, "sw")
    members = []
    for i, sets in enumerate(member_sets):
        _, cfg = load_request(RunRequest(config=demo / "run.yaml", sets=["training.max_steps=4", "training.logging_steps=2", *sets]))

        def build(run_dir: Path, cfg=cfg, i=i) -> NewRun:
            prep = prepare_at(profile, cfg, run_dir, source="test")
            rec = prep.record()
            rec.campaign, rec.member = "sw", i
            save_program(run_dir, prep.program)
            return NewRun(record=rec, script=prep.script, program=prep.program, max_requeues=0, files=prep.files)

        members.append(create_run(registry, root, f"sw-m{i}", build, hold=True))
    (campaign_dir / "campaign.json").write_text(json.dumps({"campaign_id": "sw", "kind": "sweep", "members": [
        {"index": i, "run_id": m.run_id, "values": {}} for i, m in enumerate(members)]}))
    stages = queue_stages(registry, profile, base_cfg, StageOptions(then=("merge",), follow=follow), campaign_dir,
                          members, source="test", sweep="local", max_parallel=2)
    return registry, campaign_dir, members, stages


@pytest.fixture
def demo(home, demo_dir, tmp_path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_dir, target)
    return target


def test_follow_best_selects_among_the_members_that_finished_and_merges_that_one(demo, home):
    _, cdir, members, stages = members_and_stages(demo, "best", [
        ["training.learning_rate=0.003"], [f"training.callbacks=['{FAIL}']"], ["training.learning_rate=0.0001"]])
    assert [s.kind for s in stages] == ["select", "merge"] and stages[0].after == [m.run_id for m in members]
    state_file = cdir / "runner" / "state.json"
    wait_for("the campaign to end", lambda: state_file.exists() and all(
        v["state"] in ("completed", "failed", "skipped") for v in json.loads(state_file.read_text()).values()),
        timeout=900, every=2)
    state = {k: v["state"] for k, v in json.loads(state_file.read_text()).items()}
    # the failed member does not stop the selector (afterany), and the chain after it runs
    assert state == {"sw-m0": "completed", "sw-m1": "failed", "sw-m2": "completed", "sw-select": "completed",
                     "sw-merge": "completed"}
    sel = json.loads((cdir / "selection.json").read_text())
    assert sel["metric"] in ("eval_loss", "train_loss") and set(sel["candidates"]) == {"sw-m0", "sw-m2"}
    best = min(sel["candidates"], key=lambda r: sel["candidates"][r]["value"])
    assert sel["run_id"] == best
    merged = [m for m in ("sw-m0", "sw-m2") if (Path(sel["run_dir"]).parent / m / "output" / "merged").is_dir()]
    assert merged == [best]  # only the chosen member was merged


def test_follow_every_merges_each_member_after_its_own_training(demo, home):
    _, cdir, members, stages = members_and_stages(demo, "every", [[], [f"training.callbacks=['{FAIL}']"]])
    assert [(s.kind, s.after) for s in stages] == [("merge", ["sw-m0"]), ("merge", ["sw-m1"])]
    state_file = cdir / "runner" / "state.json"
    wait_for("the campaign to end", lambda: state_file.exists() and all(
        v["state"] in ("completed", "failed", "skipped") for v in json.loads(state_file.read_text()).values()),
        timeout=900, every=2)
    state = json.loads(state_file.read_text())
    assert {k: v["state"] for k, v in state.items()} == {"sw-m0": "completed", "sw-m1": "failed",
                                                           "sw-m0-merge": "completed", "sw-m1-merge": "skipped"}
    assert state["sw-m1-merge"]["reason"] == "train failed"


def test_sweep_over_max_length_prepares_each_tokenized_cache_once_and_every_member_finds_it(demo, home):
    """--prepare with a grid over a field of the cache key: one prepare job per distinct cache (tokenizing from a
    member's config), the members wait on all of them, and each member's training is a cache hit."""
    from conftest import cli

    out = cli("sweep", str(demo / "run.yaml"), "--grid", "training.max_length=32,64", "--prepare", "--name", "ml",
              "--no-check", "--set", "training.max_steps=2", "--set", "training.logging_steps=1",
              "--set", "logging.wandb=disabled", check=True).stdout
    assert "ml-prepare-1" in out and "ml-prepare-2" in out, out
    runs = home / "hpc-finetune" / "runs"
    state_file = runs / "ml" / "runner" / "state.json"
    wait_for("the campaign to end", lambda: state_file.exists() and all(
        v["state"] in ("completed", "failed", "skipped") for v in json.loads(state_file.read_text()).values()),
        timeout=900, every=2)
    state = json.loads(state_file.read_text())
    preps = ["ml-prepare-1", "ml-prepare-2"]
    members = sorted(k for k in state if k not in preps)
    assert len(members) == 2 and {v["state"] for v in state.values()} == {"completed"}, state
    logs = {p: next((runs / p / "jobs").glob("*_0_log.out")).read_text() for p in preps}
    fingerprints = set()
    for p in preps:
        assert "tokenized cache miss" in logs[p], logs[p]
        fingerprints.add(logs[p].split("(fingerprint ")[1].split(";")[0])
    assert len(fingerprints) == 2  # two different caches, each built once
    for m in members:
        rec = json.loads((runs / m / "record.json").read_text())
        assert rec["after"] == preps  # the members (the array) wait on both
        assert all(state[m]["started"] >= state[p]["ended"] for p in preps)
        summary = json.loads((runs / m / "output" / "summary.json").read_text())
        assert summary["tokenized_cache"] == "hit", (m, summary)  # no member tokenized on its (GPU) node
    lengths = {yaml_value(runs / p / "run.yaml", "training", "max_length") for p in preps}
    assert lengths == {32, 64}  # each prepare tokenized from a member's config


def yaml_value(path: Path, *keys: str):
    import yaml

    value = yaml.safe_load(path.read_text())
    for k in keys:
        value = value[k]
    return value


def test_sweep_dry_run_describes_one_prepare_per_tokenized_cache(demo, home):
    from hpc_finetune.campaigns.chain import StageOptions, describe_prepares
    from hpc_finetune.campaigns.sweep import SweepRequest, plan_sweep
    from hpc_finetune.records import Registry

    opts = StageOptions(prepare=True, then=("merge",))
    two = plan_sweep(SweepRequest(config=demo / "run.yaml", sets=[], grid=["training.max_length=32,64"],
                                  name="ml", check=False), Registry())
    text = describe_prepares(two, opts)
    assert "# stages: prepare -> train -> select -> merge" in text
    assert "ml-prepare-1: tokenizes the data of task(s) 0" in text and "ml-prepare-2: tokenizes the data of " \
        "task(s) 1" in text and "waits on all 2 (afterok)" in text
    one = plan_sweep(SweepRequest(config=demo / "run.yaml", sets=[], grid=["training.learning_rate=1e-3,3e-3"],
                                  name="lr", seeds=2, check=False), Registry())
    text = describe_prepares(one, opts)
    assert "lr-prepare: tokenizes the data of task(s) 0,1,2,3" in text and "waits on it (afterok)" in text
    # and what `sweep --dry-run --prepare` prints (stderr; the array script on stdout)
    proc = cli("sweep", str(demo / "run.yaml"), "--grid", "training.max_length=32,64", "--name", "ml", "--prepare",
               "--then", "merge", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "ml-prepare-2: tokenizes the data of task(s) 1" in proc.stderr and "#SBATCH" in proc.stdout
    assert not (home / "hpc-finetune").exists()  # nothing created
