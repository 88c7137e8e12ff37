"""The CLI as a user meets it: fresh processes, one-line errors with exit status 2, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import PY, cli

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed", "bitsandbytes", "wandb")


LLAMA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}


def run_yaml(tmp_path, extra=""):
    (tmp_path / "m").mkdir(exist_ok=True)
    p = tmp_path / "run.yaml"
    p.write_text("name: t\nmodel: {path: m}\ndata: {train_file: d.jsonl}\n" + extra)
    return p


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_cluster(home, tmp_path):
    proc = cli("render", "--cluster", "nosuch", str(run_yaml(tmp_path)))
    assert_one_line_error(proc, "--cluster", "unknown cluster 'nosuch'", "known clusters: a100-example")


def test_too_many_nodes_and_gpus(home, tmp_path):
    cfg = str(run_yaml(tmp_path))
    assert_one_line_error(cli("render", "--cluster", "devcluster", "--nodes", "3", cfg), "resources.nodes",
                          "allows at most 2")
    assert_one_line_error(cli("render", "--cluster", "devcluster", "--gpus", "5", cfg), "resources.gpus_per_node",
                          "have 4")
    assert_one_line_error(cli("render", "--cluster", "devcluster", "--time", "3:00:00", cfg), "longer than")
    assert_one_line_error(cli("render", "--cluster", "devcluster", "--gpus", "0", "--set", "launch.strategy=fsdp",
                              cfg), "launch.strategy", "fsdp needs GPUs")


def test_malformed_time(home, tmp_path):
    assert_one_line_error(cli("render", "--time", "2 hours", str(run_yaml(tmp_path))), "resources.time",
                          "malformed time '2 hours'")


def test_malformed_yaml_and_wrong_type(home, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n")
    assert_one_line_error(cli("render", str(bad)), str(bad), "malformed YAML")
    assert_one_line_error(cli("render", str(run_yaml(tmp_path, "training: {packing: maybe}\n"))),
                          "training.packing", "expected boolean")


def test_missing_run(home):
    assert_one_line_error(cli("status", "ghost"), "no run named 'ghost'")
    assert_one_line_error(cli("logs", "ghost"), "no run named 'ghost'")
    assert_one_line_error(cli("cancel", "ghost"), "no run named 'ghost'")


def test_check_lists_every_problem_and_submit_writes_nothing(home, tmp_path):
    """Five planted mistakes: five lines from check; submit refuses and leaves no run directory behind."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "nocol.jsonl").write_text(json.dumps({"text": "hi"}) + "\n")
    (tmp_path / "model").mkdir()
    cfg = tmp_path / "planted.yaml"
    cfg.write_text("name: planted\nmodel: {path: model, tokenizer_path: tok}\n"
                   "data: {train_file: nocol.jsonl, eval_file: empty.jsonl}\n")
    proc = cli("check", str(cfg))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 5, proc.stderr
    joined = "\n".join(lines)
    for needle in ("no config.json", "no weights", "no tokenizer files", "no 'content' column", "is empty"):
        assert needle in joined
    proc = cli("submit", str(cfg))
    assert proc.returncode == 2
    assert not (home / "hpc-finetune" / "runs").exists() or not any((home / "hpc-finetune" / "runs").iterdir())


def test_render_has_no_side_effects_and_matches_dry_run(home, tmp_path):
    cfg = str(run_yaml(tmp_path))
    a = cli("render", "--cluster", "devcluster", "--nodes", "1", cfg, check=True).stdout
    b = cli("submit", "--dry-run", "--no-check", "--cluster", "devcluster", "--nodes", "1", cfg, check=True).stdout
    assert a == b and a.startswith("#!/bin/bash\n#SBATCH")


def test_commands_that_only_look_leave_no_file(home, tmp_path, monkeypatch):
    """render, submit --dry-run, plan, check, a sweep's render and dry run: no run index, no run or campaign
    directory, nothing anywhere under HOME (the shared root of the profiles used here)."""
    monkeypatch.setenv("USER", "u")  # a100-example's shared root names $USER
    cfg = str(run_yaml(tmp_path))
    (tmp_path / "d.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    (tmp_path / "m" / "config.json").write_text(json.dumps(LLAMA_7B))
    before = sorted(p for p in home.rglob("*"))
    grid = ["--grid", "training.learning_rate=1e-4,2e-4"]
    for argv in (["render", "--cluster", "devcluster", cfg], ["render", "--all", "--cluster", "a100-example", cfg],
                 ["submit", "--dry-run", "--no-check", "--cluster", "devcluster", cfg], ["plan", "--cluster", "a100-example", cfg],
                 ["check", "--cluster", "devcluster", cfg], ["render", "--cluster", "devcluster", cfg, *grid],
                 ["sweep", "--dry-run", "--no-check", "--cluster", "devcluster", cfg, *grid]):
        proc = cli(*argv)
        assert "Traceback" not in proc.stderr and (proc.returncode == 0 or argv[0] == "check"), (argv, proc.stderr)
    assert sorted(p for p in home.rglob("*")) == before


@pytest.mark.parametrize("argv", [["--help"], ["render", "RUN"], ["status"], ["submit", "--dry-run", "RUN"],
                                  ["clusters"], ["check", "RUN"], ["plan", "--cluster", "a100-example", "RUN"],
                                  ["eval", "--help"], ["report", "RUN"], ["sync", "--all", "--dry-run"]])
def test_login_commands_import_no_training_library(home, tmp_path, argv):
    cfg = str(run_yaml(tmp_path))
    (tmp_path / "d.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    (tmp_path / "m" / "config.json").write_text(json.dumps(LLAMA_7B))
    argv = [cfg if a == "RUN" else a for a in argv]
    code = ("import sys\nfrom hpc_finetune.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint('HEAVY=' + ','.join(heavy))\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_schema_lists_fields(home):
    out = cli("schema", "run", check=True).stdout
    assert "training.learning_rate" in out and "Peak learning rate" in out
    assert "gpu_request" in cli("schema", "profile", check=True).stdout


def test_version():
    assert cli("--version").stdout.startswith("hpc-finetune ")


def test_status_shows_live_runs_and_the_most_recent_ones(home):
    from hpc_finetune.records import IndexRow, Registry

    reg = Registry()
    reg.insert_many([IndexRow(run_id=f"r{i}", run_dir=f"/w/runs/r{i}", cluster="devcluster", scheduler="slurm",
                              created=1000.0 + i, nodes=1, gpus_per_node=4, time_seconds=3600, job_id=str(i),
                              state="completed", reason="", elapsed=60, segments=1, requeues=0, gpu_hours=0.07)
                     for i in range(120)])
    reg.close()
    out = cli("status", "--last", "10", check=True).stdout.splitlines()
    assert [ln.split()[0] for ln in out[1:-1]] == [f"r{i}" for i in range(110, 120)]
    assert out[-1] == "(110 older runs not shown: --all, or --last N)"
    assert len(cli("status", "--all", check=True).stdout.splitlines()) == 121
    assert len(json.loads(cli("status", "--json", check=True).stdout)) == 50


def test_every_broken_limit_is_listed_at_once(home, tmp_path):
    # PATH without scontrol/sinfo: the live part is skipped (and said so), not an error
    proc = cli("check", "--cluster", "devcluster", "--nodes", "3", "--gpus", "5", "--time", "3:00:00",
               str(run_yaml(tmp_path)), env={**os.environ, "PATH": "/bin"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for field in ("resources.nodes", "resources.gpus_per_node", "resources.time"):
        assert field in proc.stderr, proc.stderr


def test_check_reports_a_missing_callback_file(home, tmp_path):
    cfg = run_yaml(tmp_path)
    proc = cli("check", str(cfg), "--set", "training.callbacks=[gone.py:Pace, some.module:Pace]")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"training.callbacks[0]: callback file {tmp_path / 'gone.py'} does not exist" in proc.stderr
    assert "callbacks[1]" not in proc.stderr  # modules are imported on the node, not judged on the login node


@pytest.mark.parametrize("flag,value", [("--name", "x\necho pwned"), ("--set", "name=x\necho pwned")])
def test_a_name_with_a_newline_is_refused_before_it_reaches_a_script(home, tmp_path, flag, value):
    """`^...$` matched 'x\n' (re's $ before a final newline): a campaign or run name that ends a script's comment
    line would run the next line as shell code. Patterns now end in \\Z."""
    cfg = str(run_yaml(tmp_path))
    proc = cli("sweep", "--dry-run", "--no-check", "--cluster", "devcluster", cfg, "--grid",
               "training.learning_rate=1e-4,2e-4", flag, value)
    assert_one_line_error(proc, "name")
    assert "pwned" not in proc.stdout
