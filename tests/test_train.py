"""The training core on the tiny demo model: real transformers + peft + trl + bitsandbytes on the CPU."""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, cli
from hpc_finetune.errors import UserError
from hpc_finetune.runconfig import load_run_config

pytestmark = pytest.mark.train


def config(demo_dir: Path, tmp_path: Path, *sets: str):
    return load_run_config(demo_dir / "run.yaml", ["logging.wandb=disabled", f"output_dir={tmp_path / 'out'}",
                                                   *sets])


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "progress.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sets", [
    ("method=lora", "training.packing=true"),
    ("method=full", "training.learning_rate=0.001", "training.packing=false"),
    ("data.train_file=chat.jsonl", "data.format=chat", "data.eval_file=null", "model.chat_template_format=model",
     "data.completion_only_loss=true", "training.max_length=48", "training.packing=false"),
    ("data.train_file=chat.jsonl", "data.format=chat", "data.eval_file=null", "model.chat_template_format=chatml",
     "training.packing=true"),
], ids=["lora-text-packed", "full-text-unpacked", "lora-chat-completion-only", "lora-chatml-packed"])
def test_loss_falls(home, demo_dir, tmp_path, sets):
    from hpc_finetune.train.core import train

    cfg = config(demo_dir, tmp_path, "training.max_steps=40", "training.logging_steps=5", *sets)
    cfg.data.train_file = str(demo_dir / Path(cfg.data.train_file).name)
    summary = train(cfg)
    out = Path(cfg.output_dir)
    seen = losses(out)
    assert summary["step"] == 40 and len(seen) == 8
    assert seen[-1] < seen[0] - 0.05, seen
    assert (out / "final").is_dir() and (out / "summary.json").is_file()


def test_packing_leaves_little_padding_and_cache_is_reused(home, demo_dir, tmp_path):
    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.model import load_tokenizer

    cfg = config(demo_dir, tmp_path, "training.max_length=64")
    tok = load_tokenizer(cfg)
    train_ds, _eval, info = data_mod.prepare(cfg, tok)
    assert info["cache"] == "miss" and info["packing"] == "bfd"
    rows = train_ds["input_ids"]
    assert all(len(ids) <= 64 for ids in rows) and len(rows) < len(Path(cfg.data.train_file).read_text().splitlines())
    assert info["pad_fraction"] == round(1 - sum(map(len, rows)) / (64 * len(rows)), 4) < 0.1  # best fit: rows full
    assert tok.pad_token_id not in {t for ids in rows for t in ids}  # padding only at batching, never cached
    calls = []
    original = data_mod.tokenize
    data_mod.tokenize = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again, _e, info2 = data_mod.prepare(cfg, tok)
    finally:
        data_mod.tokenize = original
    assert info2["cache"] == "hit" and calls == [] and again["input_ids"] == train_ds["input_ids"]
    cfg.training.max_length = 32  # a different key: tokenized anew
    assert data_mod.prepare(cfg, tok)[2]["cache"] == "miss"


def test_config_reaches_the_objects(home, demo_dir, tmp_path):
    import torch

    from hpc_finetune.train.core import sft_config
    from hpc_finetune.train.model import lora_config, quantization_config

    cfg = config(demo_dir, tmp_path, "method=qlora", "quantization.nested_quant=true", "quantization.quant_type=fp4",
                 "quantization.compute_dtype=bfloat16", "quantization.quant_storage_dtype=bfloat16",
                 "lora.r=4", "lora.alpha=8", "lora.target_modules=[q_proj, v_proj]", "lora.bias=lora_only",
                 "training.optim=paged_adamw_32bit", "training.learning_rate=3e-4", "training.precision=fp32",
                 "training.gradient_checkpointing=true", "training.use_reentrant=true",
                 "training.extra_args={adam_beta2: 0.95}")
    bnb = quantization_config(cfg)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "fp4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and bnb.bnb_4bit_quant_storage == torch.bfloat16
    lc = lora_config(cfg)
    assert (lc.r, lc.lora_alpha, set(lc.target_modules), lc.bias) == (4, 8, {"q_proj", "v_proj"}, "lora_only")
    args = sft_config(cfg, tmp_path / "o", has_eval=False)
    assert args.optim == "paged_adamw_32bit" and args.learning_rate == 3e-4 and args.adam_beta2 == 0.95
    assert args.bf16 is False and args.fp16 is False  # explicit, not TRL's bf16=True default
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": True}
    assert quantization_config(config(demo_dir, tmp_path, "method=lora-8bit")).load_in_8bit
    assert quantization_config(config(demo_dir, tmp_path, "method=full")) is None
    assert lora_config(config(demo_dir, tmp_path, "method=full")) is None
    bad = config(demo_dir, tmp_path, "training.extra_args={learning_rat: 1}")
    with pytest.raises(UserError, match="'learning_rat' is not an SFTConfig"):
        sft_config(bad, tmp_path / "o", has_eval=False)


def test_qlora_trains_on_cpu(home, demo_dir, tmp_path):
    from hpc_finetune.train.core import train

    cfg = config(demo_dir, tmp_path, "method=qlora", "quantization.nested_quant=true",
                 "quantization.compute_dtype=float32", "training.max_steps=6", "training.logging_steps=2")
    summary = train(cfg)
    assert summary["step"] == 6
    model_dir = Path(cfg.output_dir) / "final"
    assert (model_dir / "adapter_model.safetensors").is_file()


def test_merge_and_generate(home, demo_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hpc_finetune.train.core import train
    from hpc_finetune.train.merge import merge

    cfg = config(demo_dir, tmp_path, "training.max_steps=5")
    train(cfg)
    adapter = Path(cfg.output_dir) / "final"
    cfg_json = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg_json["base_model_name_or_path"] == str(demo_dir / "model")  # absolute, as given
    merged = merge(adapter, tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(merged)
    tok = AutoTokenizer.from_pretrained(merged)
    out = model.generate(**tok("what is two plus", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 3


def test_stop_on_signal_then_resume_at_the_same_step(home, demo_dir, tmp_path):
    """SIGUSR2 mid-run: checkpoint at step k, exit; the next start resumes at k and ends at max_steps."""
    out = tmp_path / "out"
    args = [PY, "-m", "hpc_finetune.train", str(demo_dir / "run.yaml"), "--set", "logging.wandb=offline",
            "--set", f"output_dir={out}", "--set", "training.max_steps=400", "--set", "training.save_steps=1000",
            "--set", "training.logging_steps=1"]
    env = dict(os.environ, WANDB_MODE="offline")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not ((out / "steps.log").exists() and len((out / "steps.log").read_text().split()) >= 5):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR2)
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log
    interrupted = json.loads((out / "interrupted.json").read_text())
    k = interrupted["step"]
    assert 5 <= k < 400 and (out / f"checkpoint-{k}").is_dir()
    assert not (out / "summary.json").exists()
    first_id = (out / "wandb_run_id").read_text()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resume_from={out / f'checkpoint-{k}'}" in done.stdout
    steps = [int(s) for s in (out / "steps.log").read_text().split()]
    assert steps == list(range(1, 401)), "every step exactly once across the two segments"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 400 and summary["wandb_run_id"] == first_id
    assert len(list((out / "wandb").glob(f"offline-run-*-{first_id}"))) >= 1


@pytest.mark.parametrize("method,bypass", [("lora", False), ("lora", True), ("full", False)])
def test_a_checkpoint_at_the_last_step_finishes_without_another_step(home, demo_dir, tmp_path, monkeypatch, method,
                                                                     bypass):
    """Killed after the last checkpoint, before the final save (or signalled during the last step): the next start
    finishes from that checkpoint through the ordinary final save (any checkpoint format: the weights are loaded
    by then); without callbacks.StopWhenResumedAtEnd the Trainer would run step max_steps + 1."""
    from hpc_finetune.train import callbacks
    from hpc_finetune.train.core import train

    sets = ("training.max_steps=4", "training.save_steps=2", "training.logging_steps=1", f"method={method}")
    cfg = config(demo_dir, tmp_path, *sets)
    train(cfg)
    out = Path(cfg.output_dir)
    assert (out / "checkpoint-4").is_dir()
    shutil.rmtree(out / "final")
    (out / "summary.json").unlink()
    if bypass:  # the old behaviour, to show what the test catches
        monkeypatch.setattr(callbacks.StopWhenResumedAtEnd, "on_train_begin", lambda self, a, s, c, **k: c)
    summary = train(config(demo_dir, tmp_path, *sets))
    steps = [int(s) for s in (out / "steps.log").read_text().split()]
    if bypass:
        assert steps == [1, 2, 3, 4, 5]
        return
    assert steps == [1, 2, 3, 4] and summary["step"] == 4 and summary["final_loss"] is not None
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert (out / "final" / weights).is_file() and not (out / "final" / "optimizer.pt").exists()
    written = json.loads((out / "summary.json").read_text())
    assert written["finished_from_checkpoint"] is True and written["resumed_from"].endswith("checkpoint-4")
    # the final model is the checkpoint's: the same adapter weights, byte for byte
    from safetensors.torch import load_file

    a, b = load_file(out / "final" / weights), load_file(out / "checkpoint-4" / weights)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_truncated_latest_checkpoint_is_skipped(tmp_path):
    from hpc_finetune.checkpoints import last_complete

    for step, complete in ((10, True), (20, False)):
        ck = tmp_path / f"checkpoint-{step}"
        ck.mkdir()
        (ck / "trainer_state.json").write_text("{}")
        (ck / "adapter_model.safetensors").write_bytes(b"x" * 10)
        if complete:
            (ck / "optimizer.pt").write_bytes(b"x" * 10)
    assert last_complete(tmp_path) == tmp_path / "checkpoint-10"
    assert (tmp_path / "checkpoint-20").exists()  # left on disk, only skipped


def test_hub_id_while_offline_is_a_clear_error(home, demo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = subprocess.run([PY, "-m", "hpc_finetune.train", str(demo_dir / "run.yaml"), "--set",
                           "model.path=meta-llama/Llama-3.1-8B"], capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "hub id but this node is offline" in proc.stderr and "local folder" in proc.stderr


def test_bad_data_is_one_error_before_training(home, demo_dir, tmp_path):
    bad = tmp_path / "roles.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}) + "\n")
    proc = cli("train", str(demo_dir / "run.yaml"), "--set", f"data.train_file={bad}", "--set", "data.format=chat",
               "--set", "data.eval_file=null", "--set", "logging.wandb=disabled", "--set",
               f"output_dir={tmp_path / 'o'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "unknown role 'wizard'" in proc.stderr


@pytest.mark.parametrize("kind", ["parquet", "csv", "json", "arrow", "save_to_disk"])
def test_every_local_data_format_loads(home, demo_dir, tmp_path, kind):
    from datasets import Dataset

    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.model import load_tokenizer

    rows = [json.loads(line) for line in (demo_dir / "text.jsonl").read_text().splitlines()][:60]
    ds = Dataset.from_list(rows)
    target = tmp_path / {"parquet": "d.parquet", "csv": "d.csv", "json": "d.json", "arrow": "d",
                         "save_to_disk": "folder"}[kind]
    if kind == "parquet":
        ds.to_parquet(str(target))
    elif kind == "csv":
        ds.to_csv(str(target), index=False)
    elif kind == "json":
        target.write_text(json.dumps(rows))
    elif kind == "arrow":
        ds.save_to_disk(str(tmp_path / "tmpds"))
        target = next((tmp_path / "tmpds").glob("*.arrow"))
    else:
        ds.save_to_disk(str(target))
    cfg = config(demo_dir, tmp_path, f"data.train_file={target}", "data.eval_file=null")
    train_ds, eval_ds, info = data_mod.prepare(cfg, load_tokenizer(cfg))
    assert info["cache"] == "miss" and len(train_ds) > 0 and eval_ds is None


def test_user_callbacks_run_and_bad_ones_fail_before_the_model_loads(home, demo_dir, tmp_path):
    from hpc_finetune.train.core import train

    (tmp_path / "cbs.py").write_text(
        "from transformers import TrainerCallback\n"
        "class Record(TrainerCallback):\n"
        "    def on_step_end(self, args, state, control, **kw):\n"
        f"        open({str(tmp_path / 'seen')!r}, 'a').write(f'{{state.global_step}}\\n')\n"
        "class NotACallback:\n    pass\n"
        "class Broken(TrainerCallback):\n"
        "    def __init__(self):\n        raise RuntimeError('no config')\n")
    cfg = config(demo_dir, tmp_path, "training.max_steps=4", f"training.callbacks=['{tmp_path}/cbs.py:Record']")
    train(cfg)
    assert (tmp_path / "seen").read_text().split() == ["1", "2", "3", "4"]
    cases = {f"{tmp_path}/cbs.py:NotACallback": "has no TrainerCallback subclass named 'NotACallback'",
             f"{tmp_path}/cbs.py:Broken": "Broken() failed: RuntimeError: no config",
             f"{tmp_path}/missing.py:X": "does not exist on",
             "no_such_module_xyz:X": "cannot import no_such_module_xyz: ModuleNotFoundError"}
    for spec, message in cases.items():
        proc = cli("train", str(demo_dir / "run.yaml"), "--set", f"training.callbacks=['{spec}']",
                   "--set", "logging.wandb=disabled", "--set", f"output_dir={tmp_path / 'o'}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "training.callbacks[0]" in proc.stderr and message in proc.stderr, proc.stderr
        assert not (tmp_path / "o" / "progress.jsonl").exists()


def test_seed_is_out_of_the_cache_key_unless_the_eval_split_depends_on_it(home, demo_dir, tmp_path):
    """A sweep over seeds tokenizes once: `prepare` (the stage's own program, in a process of its own) builds the
    cache and training runs with other seeds find it as a hit; only an eval split drawn from the training data
    (eval_fraction without eval_file) keys on the seed, since each seed holds out other rows."""
    from hpc_finetune.train import data as data_mod
    from hpc_finetune.train.core import train
    from hpc_finetune.train.model import load_tokenizer

    cfg = config(demo_dir, tmp_path, "training.seed=1")
    tok = load_tokenizer(cfg)
    assert data_mod.fingerprint(cfg, tok) == data_mod.fingerprint(config(demo_dir, tmp_path, "training.seed=7"), tok)
    split = config(demo_dir, tmp_path, "data.eval_file=null", "data.eval_fraction=0.1", "training.seed=1")
    split7 = config(demo_dir, tmp_path, "data.eval_file=null", "data.eval_fraction=0.1", "training.seed=7")
    assert data_mod.fingerprint(split, tok) != data_mod.fingerprint(split7, tok)

    run_yaml = tmp_path / "run.yaml"
    import yaml

    from hpc_finetune.schema import to_dict
    run_yaml.write_text(yaml.safe_dump(to_dict(cfg)))
    proc = subprocess.run([PY, "-m", "hpc_finetune.train.prepare_data", str(run_yaml)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "tokenized cache miss" in proc.stdout and data_mod.fingerprint(cfg, tok) in proc.stdout
    summary = train(config(demo_dir, tmp_path, "training.seed=7", "training.max_steps=2"))
    assert summary["tokenized_cache"] == "hit"
