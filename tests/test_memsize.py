"""Slurm memory sizes: one parser for the profile's validation, --mem scaling, `plan` and the live check."""

from __future__ import annotations

import pytest

from hpc_finetune import memsize
from hpc_finetune.errors import UserError
from hpc_finetune.profile import load_profile_file


@pytest.mark.parametrize("text,mb", [("64G", 65536), ("512M", 512), ("200000", 200000), ("1T", 1 << 20),
                                     ("2048K", 2), ("0", 0)])
def test_accepted_sizes_in_megabytes(text, mb):
    assert memsize.is_valid(text) and memsize.megabytes(text) == mb


@pytest.mark.parametrize("text", ["", "64GB", "64g", "1.5G", " 64G", "64G ", "-1G", "G", "٦٤G"])
def test_rejected_sizes(text):
    assert not memsize.is_valid(text) and memsize.megabytes(text) is None
    with pytest.raises(ValueError):
        memsize.scale(text, 2)


def test_scale_keeps_the_unit():
    assert memsize.scale("64G", 4) == "256G" and memsize.scale("200000", 2) == "400000"
    assert memsize.scale("8G", 0) == "0G"


@pytest.mark.parametrize("value,ok", [("64G", True), ("200000", True), ("64GB", False), ("٦٤G", False)])
def test_profile_accepts_exactly_this_syntax(tmp_path, value, ok):
    path = tmp_path / "p.yaml"
    path.write_text(f"scheduler: slurm\ngpus_per_node: 4\nmem_per_gpu: '{value}'\n")
    if ok:
        assert load_profile_file(path).mem_per_gpu == value
    else:
        with pytest.raises(UserError, match="mem_per_gpu.*memory like 64G, 512M or 200000"):
            load_profile_file(path)


def test_plan_and_jobspec_use_it():
    from hpc_finetune.plan import _mem_gb

    assert _mem_gb("1G") == pytest.approx(1024 * 1024 * 1024 / 1e9)
