"""One owner for data-format facts: the login node's pre-flight check and the training core judge a record alike."""

from __future__ import annotations

import json

import pytest

from hpc_finetune import dataformat
from hpc_finetune.datacheck import check_data_file
from hpc_finetune.runconfig import DataConfig

CHAT = DataConfig(train_file="x.jsonl", format="chat")
TEXT = DataConfig(train_file="x.jsonl", format="text", text_field="content")

# bad records, and the one sentence both sides say (records of one type each: `datasets` needs a uniform column)
BAD = [
    (CHAT, [{"messages": [{"role": "wizard", "content": "hi"}]}], "record 1: unknown role 'wizard'; allowed: "
                                                                  "assistant, system, tool, user"),
    (CHAT, [{"messages": [{"role": "user", "content": 3}]}], "record 1: a message's 'content' is a number, not text"),
    (CHAT, [{"messages": [{"role": "user", "content": ["a"]}]}], "record 1: a message's 'content' is a list, not text"),
    (CHAT, [{"messages": []}], "record 1 has an empty conversation"),
    (TEXT, [{"content": 7}, {"content": 8}], "record 1: 'content' is a number, not text"),
    (TEXT, [{"content": None}], "record 1: 'content' is null, not text"),
]


@pytest.mark.parametrize("cfg,records,message", BAD)
def test_login_check_and_training_core_say_the_same(tmp_path, cfg, records, message):
    datasets = pytest.importorskip("datasets")
    from hpc_finetune.errors import UserError
    from hpc_finetune.train.data import validate_columns

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    login, _ = check_data_file(path, cfg)
    assert login == f"{path}: {message}"
    with pytest.raises(UserError) as err:
        validate_columns(datasets.Dataset.from_list(records), cfg, str(path))
    assert str(err.value).endswith(f"{path}: {message}"), str(err.value)


def test_missing_column_is_one_sentence_on_both_sides(tmp_path):
    datasets = pytest.importorskip("datasets")
    from hpc_finetune.errors import UserError
    from hpc_finetune.train.data import validate_columns

    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "hi"}) + "\n")
    login, _ = check_data_file(path, TEXT)
    assert login == (f"{path}: record 1 has no 'content' column (columns: text); set data.text_field, or "
                     "data.format: chat for conversations")
    with pytest.raises(UserError) as err:
        validate_columns(datasets.Dataset.from_list([{"text": "hi"}]), TEXT, str(path))
    assert str(err.value).endswith(f"{path} has no 'content' column (columns: text); set data.text_field, or "
                                   "data.format: chat for conversations")


def test_suffixes_are_the_loaders(tmp_path):
    assert dataformat.SUFFIXES == tuple(dataformat.LOADERS)
    bad = tmp_path / "d.txt"
    bad.write_text("x")
    login, _ = check_data_file(bad, TEXT)
    assert login == f"{bad}: unsupported file type '.txt'; use one of .jsonl, .json, .parquet, .csv, .arrow"
