"""The stage registry (campaigns/stages.py) and the "skipped: train failed" display rule (campaigns/skipping.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_finetune.campaigns.skipping import ChainJob, shown_states
from hpc_finetune.campaigns.stages import STAGES, THEN, Target, chain_of, parse_then
from hpc_finetune.errors import UserError


def test_then_is_put_in_chain_order_and_bad_names_are_one_clear_error():
    assert parse_then("eval,merge") == ("merge", "eval")
    assert parse_then(" report , merge ") == ("merge", "report")
    with pytest.raises(UserError, match=r"unknown stage 'evl'; choose from merge, eval, report"):
        parse_then("evl")
    with pytest.raises(UserError, match="named twice"):
        parse_then("merge,merge")
    with pytest.raises(UserError, match="no stage named"):
        parse_then(",")
    assert "select" not in THEN and "prepare" not in THEN and "train" not in THEN  # chosen by flags, not --then


def test_chain_order_puts_prepare_first_and_select_only_between_a_sweep_and_its_stages():
    assert chain_of(("merge", "eval"), prepare=True, select=False) == ("prepare", "train", "merge", "eval")
    assert chain_of(("eval",), prepare=False, select=True) == ("train", "select", "eval")
    assert chain_of((), prepare=True, select=True) == ("prepare", "train")


def test_each_stage_command_is_built_from_the_run_it_follows():
    t = Target(run_dir=Path("/r/demo"), output_dir=Path("/r/demo/output"), chain=("train", "merge", "eval"),
               campaign_dir=Path("/c/demo"))
    assert STAGES["merge"].command(t) == ["hpc_finetune", "merge", "/r/demo/output/final",
                                          "--out", "/r/demo/output/merged"]
    # after a merge, eval evaluates the merged model; without one, the adapter
    assert STAGES["eval"].command(t)[-4:] == ["--model", "/r/demo/output/merged", "--out", "/r/demo/eval"]
    plain = Target(Path("/r/demo"), Path("/r/demo/output"), ("train", "eval"))
    assert STAGES["eval"].command(plain)[3] == "/r/demo/output/final"
    assert STAGES["prepare"].command(t) == ["hpc_finetune.train.prepare_data", "/r/demo/run.yaml"]
    assert STAGES["select"].command(t) == ["hpc_finetune.job.select", "/c/demo"]
    assert STAGES["train"].command is None
    # what runs where: only eval (and train) take a GPU; only select waits with afterany
    assert {n for n, s in STAGES.items() if s.gpu} == {"train", "eval"}
    assert {n for n, s in STAGES.items() if s.after_any} == {"select"}


def chain(train_state, merge_state="cancelled", eval_state="cancelled", prepare_state="completed"):
    return [ChainJob("demo-prepare", "prepare", prepare_state),
            ChainJob("demo", "train", train_state, after=("demo-prepare",)),
            ChainJob("demo-merge", "merge", merge_state, after=("demo",)),
            ChainJob("demo-eval", "eval", eval_state, after=("demo-merge",))]


def test_a_failed_training_shows_its_whole_tail_as_skipped_naming_the_failure():
    # what Slurm leaves with --kill-on-invalid-dep=yes: the dependents CANCELLED, never started
    shown = shown_states(chain("failed"))
    assert shown == {"demo-prepare": "completed", "demo": "failed", "demo-merge": "skipped: train failed",
                     "demo-eval": "skipped: train failed"}
    # without kill-on-invalid-dep (or before slurmctld got to it) they are still PENDING: the same words
    assert shown_states(chain("timeout", "pending", "pending"))["demo-eval"] == "skipped: train timeout"
    # a failed prepare skips training, too
    shown = shown_states(chain("cancelled", prepare_state="failed"))
    assert shown["demo"] == shown["demo-eval"] == "skipped: prepare failed"


def test_a_healthy_chain_shows_its_own_states():
    assert shown_states(chain("running", "pending", "pending"))["demo-eval"] == "pending"
    assert shown_states(chain("completed", "running", "pending"))["demo-merge"] == "running"
    # a stage that ran keeps its own state even if the run before it failed later (a requeued run)
    assert shown_states(chain("failed", "completed", "completed"))["demo-merge"] == "completed"
    # a training requeued after a failure is pending again: its re-wired stages are plain pending
    assert shown_states(chain("pending", "pending", "pending"))["demo-merge"] == "pending"


def test_select_runs_however_the_members_ended_but_its_own_failure_skips_the_rest():
    jobs = [ChainJob("s-0", "train", "failed"), ChainJob("s-1", "train", "completed"),
            ChainJob("s-select", "select", "completed", after=("s-0", "s-1"), after_any=True),
            ChainJob("s-merge", "merge", "pending", after=("s-select",))]
    assert shown_states(jobs)["s-merge"] == "pending"
    jobs[2] = ChainJob("s-select", "select", "failed", after=("s-0", "s-1"), after_any=True)
    assert shown_states(jobs)["s-merge"] == "skipped: select failed"


def stage_script(profile_name: str, stage: str, tmp_path: Path, **flags) -> str:
    from hpc_finetune.campaigns.chain import StageOptions, stage_config, stage_profile, with_dependency
    from hpc_finetune.jobspec import resolve
    from hpc_finetune.profile import find_profile
    from hpc_finetune.render import job_script
    from hpc_finetune.runconfig import load_run_config

    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "run.yaml").write_text("name: r\nmodel: {path: model}\ndata: {train_file: d.jsonl}\n"
                                       "launch: {strategy: fsdp}\n")
    profile = find_profile(profile_name)
    cfg = load_run_config(tmp_path / "run.yaml", [])
    opts = StageOptions(then=("merge", "eval"), **flags)
    spec = resolve(stage_profile(profile, stage, opts), stage_config(profile, cfg, stage, opts), tmp_path / "s")
    return job_script(stage_profile(profile, stage, opts), with_dependency(spec, "afterok:41"))


def test_stage_jobs_take_their_resources_from_the_profile_and_the_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "alice")  # the example profile's shared_root is /work/$USER
    # a100-example: GPU partition `gpu`, 4 GPUs per node; stages: partition cpu, mem 200G, time 02:00:00
    merge = stage_script("a100-example", "merge", tmp_path)
    assert "#SBATCH --partition=cpu\n" in merge and "#SBATCH --mem=200G\n" in merge
    assert "#SBATCH --time=02:00:00\n" in merge and "gres" not in merge and "#SBATCH --nodes=1\n" in merge
    assert "#SBATCH --dependency=afterok:41\n#SBATCH --kill-on-invalid-dep=yes\n" in merge
    evl = stage_script("a100-example", "eval", tmp_path)  # where the run ran, one GPU
    assert "#SBATCH --partition=gpu\n" in evl and "#SBATCH --gres=gpu:a100:1\n" in evl
    flagged = stage_script("a100-example", "merge", tmp_path, partition="bigmem", time="00:30:00", mem="500G",
                           cpus=16)
    assert "#SBATCH --partition=bigmem\n" in flagged and "#SBATCH --time=00:30:00\n" in flagged
    assert "#SBATCH --mem=500G\n" in flagged and "#SBATCH --cpus-per-task=16\n" in flagged
    # the dev cluster's profile has no stages section: the profile's partition and CPU-only request
    dev = stage_script("devcluster", "prepare", tmp_path)
    assert "#SBATCH --partition=debug\n" in dev and "#SBATCH --mem=1800M\n" in dev and "gpus" not in dev
