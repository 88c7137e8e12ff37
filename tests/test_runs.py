"""The run service (runs.py): prepare without side effects, one resolve per submit, requeue from the run directory."""

from __future__ import annotations

import pytest

from hpc_finetune import jobspec, layout, runs
from hpc_finetune.job.launch import NodeInfo
from hpc_finetune.runs import RunRequest, prepare_existing, prepare_run


def run_yaml(tmp_path, body="name: t\nmodel: {path: m}\ndata: {train_file: d.jsonl}\n"):
    (tmp_path / "m").mkdir(exist_ok=True)
    p = tmp_path / "run.yaml"
    p.write_text(body)
    return p


def test_prepare_run_creates_nothing(home, tmp_path):
    prep = prepare_run(RunRequest(run_yaml(tmp_path), cluster="local", sets=["launch.strategy=deepspeed"]))
    assert not (home / "state").exists()  # no registry file
    assert prep.spec.run_dir == home / "hpc-finetune" / "runs" / "t"
    assert not (home / "hpc-finetune").exists()  # no run directory, no runs root
    assert list(prep.files) == ["run.yaml", "profile.yaml", "job.sh", "accelerate_config.yaml",
                                "deepspeed_config.json"]
    assert prep.cfg.output_dir == str(prep.spec.run_dir / "output")


@pytest.mark.train
def test_the_checked_spec_is_the_submitted_spec(home, tmp_path, demo_dir, monkeypatch):
    """One resolve per submit: the pre-flight check resolves the run for the directory submit will claim, and
    that spec (not one for a stand-in directory) is the one rendered and submitted."""
    calls = []
    real = jobspec.resolve

    def counting(profile, cfg, run_dir, **kw):
        calls.append(run_dir)
        return real(profile, cfg, run_dir, **kw)

    monkeypatch.setattr("hpc_finetune.check.resolve", counting)
    monkeypatch.setattr("hpc_finetune.jobspec.resolve", counting)  # runs.py imports it where it resolves
    cfg = run_yaml(tmp_path, f"name: one\nmodel: {{path: {demo_dir / 'model'}}}\n"
                             f"data: {{train_file: {demo_dir / 'text.jsonl'}}}\ntraining: {{max_length: 64}}\n")
    prep = prepare_run(RunRequest(cfg, cluster="local"), check=True)
    assert calls == [prep.spec.run_dir] and prep.spec.run_dir.name == "one"
    assert any(n.startswith("data:") for n in prep.notes)
    assert not prep.spec.run_dir.exists()


@pytest.mark.parametrize("cluster,nodes,sets", [("local", 1, []), ("devcluster", 2, ["launch.strategy=fsdp"]),
                                                ("a100-example", 2, ["launch.strategy=deepspeed",
                                                                     "launch.launcher=torchrun"])])
def test_requeue_prepares_what_submit_wrote(home, tmp_path, monkeypatch, cluster, nodes, sets):
    """requeue_run's rule: the run is prepared again from its own run.yaml and profile.yaml; for an unchanged version
    that is byte for byte the job script and launch files submit wrote, and the same node program."""
    monkeypatch.setenv("USER", "alice")
    prep = prepare_run(RunRequest(run_yaml(tmp_path), cluster=cluster, nodes=nodes, sets=sets))
    run_dir = prep.spec.run_dir
    run_dir.mkdir(parents=True)
    for name, text in prep.files.items():
        (run_dir / name).write_text(text)
    again = prepare_existing(run_dir)
    rewritten = [name for name in prep.files if name not in ("run.yaml", "profile.yaml")]
    assert {n: again.files[n] for n in rewritten} == {n: prep.files[n] for n in rewritten}
    assert again.program == prep.program
    assert again.spec.launch == prep.spec.launch


@pytest.mark.parametrize("sets,launcher,files", [
    ([], "python", ()),
    (["launch.launcher=torchrun"], "torchrun", ()),
    (["launch.strategy=fsdp"], "accelerate", (layout.ACCELERATE_CONFIG,)),
    (["launch.strategy=deepspeed", "launch.launcher=torchrun"], "torchrun",
     (layout.ACCELERATE_CONFIG, layout.DEEPSPEED_CONFIG)),
])
def test_one_launch_plan_for_render_and_the_node_program(home, tmp_path, sets, launcher, files):
    nodes = 1 if not sets else 2
    prep = prepare_run(RunRequest(run_yaml(tmp_path), cluster="devcluster", nodes=nodes, gpus=1, sets=sets))
    plan = prep.spec.launch
    assert (plan.launcher, plan.files) == (launcher, files)
    assert tuple(runs.PreparedRun.files.fget(prep))[3:] == files  # what submit writes = what the plan names
    info = NodeInfo(node_rank=1, num_nodes=nodes, hostname="n2", main_host="n1", main_addr="10.0.0.1", port=2,
                    job_id="9")
    assert prep.program.launch_plan() == plan  # the pickled program derives the same plan on the node
    assert prep.program.command(info) == plan.command(prep.program.python, node_rank=1, main_addr="10.0.0.1",
                                                      port=2)
    assert ("HPCFT_DEEPSPEED_CONFIG" in plan.env) == (files == (layout.ACCELERATE_CONFIG, layout.DEEPSPEED_CONFIG))


def test_extra_sbatch_options_pass_through_the_spec(home, tmp_path):
    """What a campaign's chained stage needs: options given for a run dir reach its #SBATCH header, quoted."""
    from hpc_finetune.profile import find_profile
    from hpc_finetune.runconfig import load_run_config

    cfg = load_run_config(run_yaml(tmp_path))
    prep = runs.prepare_at(find_profile("devcluster"), cfg, tmp_path / "campaign" / "member-0", source="x",
                           extra_sbatch=[("dependency", "afterok:123"), ("kill-on-invalid-dep", "yes"),
                                         ("array", "0-3%2")])
    lines = prep.script.splitlines()
    header = lines[:lines.index("#SBATCH --requeue") + 4]
    for line in ("#SBATCH --dependency=afterok:123", "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --array=0-3%2"):
        assert line in header
    assert prep.spec.run_dir.name == "member-0" and cfg.output_dir is None  # the caller's config is untouched
