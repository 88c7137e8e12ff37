"""`hpc-finetune eval`: the tuned model against its base on the run's eval data, and their answers side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def trained(demo_dir, tmp_path_factory):
    """The demo run (LoRA, 30 steps), with the trainer's own evaluation at the end for comparison."""
    import os

    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.train.core import train

    out = tmp_path_factory.mktemp("eval-run") / "output"
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    try:
        cfg = load_run_config(demo_dir / "run.yaml", ["logging.wandb=disabled", f"output_dir={out}",
                                                      "training.eval_strategy=steps", "training.eval_steps=30",
                                                      # one eval batch: the Trainer averages its batches' losses by
                                                      # rows, so only then is its figure token-weighted like ours
                                                      "training.per_device_eval_batch_size=64"])
        train(cfg)
    finally:
        if old is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = old
    return out


def test_tuned_adapter_beats_its_base_and_both_answer(home, demo_dir, trained):
    proc = cli("eval", str(trained), "--config", str(demo_dir / "run.yaml"), "--max-new-tokens", "8", check=True)
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert metrics["kind"] == "adapter" and metrics["data"] == str(demo_dir / "eval_text.jsonl")
    assert metrics["tuned"]["eval_loss"] < metrics["base"]["eval_loss"] - 0.1, metrics
    # the same number the trainer measured on the same data at its last step (token-weighted mean cross-entropy)
    trainer_eval = [json.loads(line) for line in (trained / "progress.jsonl").read_text().splitlines()
                    if json.loads(line)["kind"] == "eval"]
    assert trainer_eval[-1]["step"] == 30
    assert metrics["tuned"]["eval_loss"] == pytest.approx(trainer_eval[-1]["eval_loss"], abs=2e-3)
    samples = [json.loads(line) for line in (trained / "eval" / "samples.jsonl").read_text().splitlines()]
    prompts = [json.loads(line) for line in (demo_dir / "prompts.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == [p["prompt"] for p in prompts]
    assert all(s["base"] and s["tuned"] and s["reference"] for s in samples)
    assert any(s["base"] != s["tuned"] for s in samples)
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["base"] for line in lines) and any(line.split()[:1] == ["tuned"] for line in lines)
    assert sum(line.startswith("prompt: ") for line in lines) == len(prompts)


def test_merged_model_and_chat_prompts(home, demo_dir, trained, tmp_path):
    """A full (here: merged) model is evaluated next to its base; `messages` prompts go through the chat template."""
    from hpc_finetune.train.merge import merge

    merged = merge(trained / "final", tmp_path / "merged")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "what is two plus three?"},
                                                {"role": "assistant", "content": "two plus three is five."}]}) + "\n")
    cli("eval", str(trained), "--config", str(demo_dir / "run.yaml"), "--model", str(merged), "--prompts",
        str(prompts), "--max-new-tokens", "4", "--out", str(tmp_path / "ev"), check=True)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    adapter = json.loads((trained / "eval" / "metrics.json").read_text()) if (trained / "eval").exists() else None
    assert metrics["kind"] == "full"
    assert metrics["tuned"]["eval_loss"] < metrics["base"]["eval_loss"] - 0.1
    if adapter:  # merging changes nothing the loss can see
        assert metrics["tuned"]["eval_loss"] == pytest.approx(adapter["tuned"]["eval_loss"], abs=1e-3)
    sample = json.loads((tmp_path / "ev" / "samples.jsonl").read_text())
    assert sample["prompt"] == "<|im_start|>user\nwhat is two plus three?<|im_end|>\n<|im_start|>assistant\n"
    assert sample["reference"] == "two plus three is five."


def test_bad_prompts_file_is_one_line_before_the_model_loads(home, demo_dir, trained, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"question": "x"}\n')
    proc = cli("eval", str(trained), "--config", str(demo_dir / "run.yaml"), "--prompts", str(bad),
               "--out", str(tmp_path / "ev"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "line 1 needs a \"prompt\" string" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ev").exists()
    missing = cli("eval", str(Path(trained).parent / "nope"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_eval_as_a_job_of_its_own(home, demo_dir, trained, tmp_path):
    """`--submit`: a one-process job on the cluster (here: this machine), recorded as run `NAME-eval`."""
    out = tmp_path / "ev"
    proc = cli("eval", str(trained), "--config", str(demo_dir / "run.yaml"), "--submit", "--cluster", "local",
               "--wait", "--max-new-tokens", "3", "--out", str(out), timeout=900)
    run = proc.stdout.split(" as run ")[1].split(",")[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr + cli("logs", run).stdout[-3000:]
    assert run == f"{trained.parent.name}-eval"  # `train` output folders are named after their parent
    row = json.loads(cli("status", run, "--json", check=True).stdout)[0]
    assert row["state"] == "completed" and row["nodes"] == 1
    log = cli("logs", run, check=True).stdout
    assert "-m hpc_finetune.train.evaluate" in log and "--max-new-tokens 3" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tuned"]["eval_loss"] < metrics["base"]["eval_loss"] - 0.1
    assert metrics["generation"]["max_new_tokens"] == 3 and metrics["samples"] == 4
