"""Pre-flight checks on the login node: every problem at once, each with its fix. No training import."""

from __future__ import annotations

import os
from pathlib import Path

from hpc_finetune.errors import UserError, UserErrors
from hpc_finetune.jobspec import JobSpec
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.runconfig import RunConfig, is_hub_id


def find_problems(cfg: RunConfig, profile: ClusterProfile, spec: JobSpec, *, config_source: str) -> list[UserError]:
    problems: list[UserError] = []

    def add(field: str, msg: str) -> None:
        problems.append(UserError(msg, source=config_source, field=field))

    _model_problems(cfg, profile, add)
    _data_problems(cfg, add)
    _writable(spec.run_dir.parent, "output (run directory root)", add)
    return problems


def _model_problems(cfg: RunConfig, profile: ClusterProfile, add) -> None:
    path = cfg.model.path
    if is_hub_id(path):
        if profile.offline:
            add("model.path", f"{path!r} is a hub id but cluster {profile.name!r} is offline; download it on the "
                              "login node (huggingface-cli download) and give the local folder")
        return
    folder = Path(path)
    if not folder.is_dir():
        add("model.path", f"model folder {folder} does not exist")
        return
    if not (folder / "config.json").is_file():
        add("model.path", f"{folder} has no config.json: not a transformers model folder")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        add("model.path", f"{folder} has no weights (*.safetensors or *.bin)")
    tok = Path(cfg.model.tokenizer_path) if cfg.model.tokenizer_path else folder
    if not any((tok / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        add("model.tokenizer_path" if cfg.model.tokenizer_path else "model.path",
            f"{tok} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")


def _data_problems(cfg: RunConfig, add) -> None:
    from hpc_finetune.datacheck import check_data_file

    for field in ("train_file", "eval_file"):
        value = getattr(cfg.data, field)
        if value:
            msg = check_data_file(Path(value), cfg.data)
            if msg:
                add(f"data.{field}", msg)


def _writable(folder: Path, what: str, add) -> None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        add("output_dir", f"{what}: {folder} is not writable (nearest existing folder {probe})")


def raise_problems(cfg: RunConfig, profile: ClusterProfile, spec: JobSpec, *, config_source: str) -> None:
    problems = find_problems(cfg, profile, spec, config_source=config_source)
    if problems:
        raise UserErrors(problems)
