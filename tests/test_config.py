"""Typed config and profile loading: every shipped profile validates; bad input is one clear error."""

from __future__ import annotations

import pytest

from hpc_finetune.errors import UserError
from hpc_finetune.profile import available_profiles, find_profile, load_profile_file
from hpc_finetune.resources import data_dir
from hpc_finetune.runconfig import load_run_config
from hpc_finetune.schema import apply_overrides, describe
from hpc_finetune.timefmt import format_time, parse_time


def test_every_shipped_profile_validates():
    shipped = sorted(data_dir("clusters").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"local", "devcluster", "a100-example"}
    for path in shipped:
        prof = load_profile_file(path)
        assert prof.name == path.stem
        assert prof.default_seconds <= prof.max_seconds


def test_every_field_has_help():
    from hpc_finetune.profile import ClusterProfile
    from hpc_finetune.runconfig import RunConfig

    for cls in (ClusterProfile, RunConfig):
        for key, _tp, _default, help_text in describe(cls):
            assert help_text.strip(), f"{cls.__name__}.{key} has no help"


def write(tmp_path, text, name="run.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_key_lists_valid_keys(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\ntraining: {learning_rat: 1}\n")
    with pytest.raises(UserError) as exc:
        load_run_config(p)
    msg = str(exc.value)
    assert str(p) in msg and "training.learning_rat" in msg and "learning_rate" in msg


def test_wrong_type_names_field_and_type(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\ntraining: {max_steps: ten}\n")
    with pytest.raises(UserError, match=r"training.max_steps: expected integer, got a string 'ten'"):
        load_run_config(p)


def test_choices_are_listed(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\nmethod: dora\n")
    with pytest.raises(UserError, match="'lora', 'qlora', 'lora-8bit', 'full'"):
        load_run_config(p)


def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "name: x\nmodel: [unclosed\n")
    with pytest.raises(UserError, match=r"malformed YAML: line \d+"):
        load_run_config(p)


def test_times_stay_strings_not_sexagesimal(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\nresources: {time: 1:30:00}\n")
    assert load_run_config(p).resources.time == "1:30:00"


@pytest.mark.parametrize("text,seconds", [("90", 5400), ("01:30:00", 5400), ("2-00:00:00", 172800),
                                          ("1-12", 129600), ("10:30", 630)])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["1h", "abc", "0", "1:2:3:4", "-5"])
def test_malformed_time(text):
    with pytest.raises(UserError, match="malformed time|longer than zero"):
        parse_time(text)


def test_format_time():
    assert format_time(3725) == "1:02:05" and format_time(90061) == "1-01:01:01"


def test_newline_in_value_is_rejected(tmp_path):
    p = write(tmp_path, 'name: x\nmodel: {path: "/m\\necho pwned"}\ndata: {train_file: /d.jsonl}\n')
    with pytest.raises(UserError, match="control characters"):
        load_run_config(p)


def test_secrets_never_in_profiles(tmp_path):
    p = write(tmp_path, "scheduler: slurm\nextra_env: {HF_TOKEN: hf_abc}\n", "site.yaml")
    with pytest.raises(UserError, match="secrets never go into profiles"):
        load_profile_file(p)


def test_overrides_and_relative_paths(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: model}\ndata: {train_file: d.jsonl}\n")
    cfg = load_run_config(p, ["training.learning_rate=2e-4", "lora.target_modules=q_proj,v_proj",
                              "resources.nodes=2"])
    assert cfg.training.learning_rate == 2e-4
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.resources.nodes == 2
    assert cfg.model.path == str(tmp_path / "model")  # absolute: adapter_config.json keeps it as given
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_overrides({}, ["nokey"])


def test_seed_defaults_are_explicit(tmp_path):
    cfg = load_run_config(write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n"))
    t = cfg.training
    assert (t.learning_rate, t.lr_scheduler_type, t.weight_decay, t.seed, t.max_length) == (1e-4, "cosine", 1e-4,
                                                                                           100, 2048)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (8, 16, 0.1, "all-linear")


def test_profile_search_order(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.yaml").write_text("scheduler: local\ndescription: my override\n")
    monkeypatch.setenv("HPC_FINETUNE_CLUSTERS", str(site))
    assert find_profile("local").description == "my override"
    assert available_profiles()["local"] == site / "local.yaml"
    with pytest.raises(UserError, match="unknown cluster 'nope'; known clusters: a100-example, devcluster, local"):
        find_profile("nope")


def test_callbacks_are_checked_and_files_made_absolute(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: m}\ntraining:\n  callbacks: [cb.py:Stop, my_pkg.cbs:Log]\n")
    cfg = load_run_config(p)
    assert cfg.training.callbacks == [f"{tmp_path / 'cb.py'}:Stop", "my_pkg.cbs:Log"]
    for bad in ("cb.py", "my-pkg.x:Log", "x:1Log", "a:b:C"):
        with pytest.raises(UserError, match=r"training\.callbacks\[0\].*is not 'package\.module:Class'"):
            load_run_config(p, [f"training.callbacks=[{bad!r}]"])


@pytest.mark.parametrize("name", ["HF_TOKEN", "hub_token", "WANDB_API_KEY", "HF_AUTH", "DB_PWD", "CREDENTIALS",
                                  "AWS_SECRET_ACCESS_KEY", "MY_SECRET", "SMTP_PASSWORD", "push_to_hub_token"])
def test_secret_names_are_recognised(name):
    from hpc_finetune.values import secret_name

    assert secret_name(name)


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "max_tokens", "KEYRING_BACKEND", "tokenizer_path",
                                  "OMP_NUM_THREADS", "PASSTHROUGH", "AUTHOR", "report_to"])
def test_ordinary_names_are_not_secrets(name):
    from hpc_finetune.values import secret_name

    assert not secret_name(name)


def test_secret_values_by_shape_not_by_substring():
    from hpc_finetune.values import secret_value

    assert secret_value("hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7")
    assert secret_value("0123456789abcdef0123456789abcdef01234567")
    assert secret_value("--export=ALL,HF_TOKEN=x")
    for ordinary in ("/data/tokens/hf_cache", "/hub/models--x/snapshots/0123456789abcdef0123456789abcdef01234567",
                     "--export=ALL", "--export=HF_TOKEN", "--mail-type=END", "my_token_study"):
        assert not secret_value(ordinary), ordinary


def test_an_error_names_the_flag_or_set_that_gave_the_value(tmp_path):
    p = write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n")
    with pytest.raises(UserError) as exc:
        load_run_config(p, flags={"resources.partition": ("--partition", "a\nb")})
    assert str(exc.value).startswith("--partition: resources.partition: control characters")
    with pytest.raises(UserError) as exc:
        load_run_config(p, ["training.extra_args.run_name='a\tb'"])
    assert str(exc.value).startswith("--set: training.extra_args.run_name: control characters")
    with pytest.raises(UserError) as exc:  # the same value from the file names the file
        load_run_config(write(tmp_path, "name: x\nmodel: {path: /m}\ndata: {train_file: /d.jsonl}\n"
                                        "resources: {partition: \"a\\nb\"}\n", "y.yaml"))
    assert str(exc.value).startswith(f"{tmp_path / 'y.yaml'}: resources.partition: control characters")
