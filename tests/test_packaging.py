"""hpc/environment.yml pins versions that pyproject.toml admits."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def test_environment_versions_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    pins = dict(re.findall(r"^\s+- ([A-Za-z0-9_.-]+)==([\w.]+)\s*$", (REPO / "hpc/environment.yml").read_text(), re.M))
    checked = 0
    for req in reqs:
        if req.name in pins:
            assert req.specifier.contains(pins[req.name]), f"{req.name}=={pins[req.name]} not in {req.specifier}"
            checked += 1
    assert checked >= 12
