"""Weight dtypes by name: one table (dtypes.py) for the config's choices, `plan`, `merge` and the training core."""

from __future__ import annotations

import json
import typing

import pytest

from hpc_finetune import dtypes
from hpc_finetune.runconfig import ModelConfig, QuantSettings, TrainingConfig


def _choices(cls, name):
    return set(typing.get_args(typing.get_type_hints(cls)[name]))


def test_config_choices_come_from_the_table():
    assert _choices(ModelConfig, "dtype") == {"auto", *dtypes.FLOATING}
    assert _choices(QuantSettings, "compute_dtype") == {"auto", *dtypes.FLOATING}
    assert _choices(QuantSettings, "quant_storage_dtype") == {"auto", *dtypes.BYTES}
    assert _choices(TrainingConfig, "precision") == set(dtypes.PRECISION)
    assert set(dtypes.PRECISION.values()) == set(dtypes.FLOATING) <= set(dtypes.BYTES)


def test_bytes_are_torchs():
    torch = pytest.importorskip("torch")
    for name, size in dtypes.BYTES.items():
        assert getattr(torch, name).itemsize == size


def test_merge_sizes_with_the_table(tmp_path):
    from hpc_finetune.mergeplan import base_dtype

    for dtype, expected in (("bfloat16", "bfloat16"), ("float16", "float16"), ("uint8", "float32"), (None, "float32")):
        (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": dtype}))
        assert base_dtype(tmp_path) == expected  # a quantized storage dtype is no dtype to merge in
