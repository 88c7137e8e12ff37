"""Pre-flight checks on the login node: every problem at once, each with its fix. No training import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from hpc_finetune.errors import UserError, UserErrors
from hpc_finetune.jobspec import JobSpec, gpus_asked, node_request, resolve
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.runconfig import RunConfig, is_hub_id, parse_callback
from hpc_finetune.timefmt import parse_time


def find_problems(cfg: RunConfig, profile: ClusterProfile, run_dir: Path, *, config_source: str,
                  full: bool = False) -> tuple[Optional[JobSpec], list[UserError], list[str]]:
    """The job spec (None if the request breaks a profile limit), every problem with this run on this cluster (one
    UserError each), and notes on what was checked. ``full``: read every data record, not the first few."""
    problems: list[UserError] = []
    notes: list[str] = []
    fields: set[str] = set()

    def add(field: str, msg: str, source: str = config_source) -> None:
        key = field.split(" ")[0]
        if key.startswith("resources.") and key in fields:
            return  # one line per resource: the profile's limit and the live limit say the same thing
        fields.add(key)
        problems.append(UserError(msg, source=source, field=field))

    spec: Optional[JobSpec] = None
    try:
        spec = resolve(profile, cfg, run_dir, source=config_source)
    except UserError as exc:
        for err in getattr(exc, "errors", [exc]):
            add(err.field or "resources", err.message, err.source or config_source)
    _model_problems(cfg, profile, add)
    _data_problems(cfg, add, notes, full)
    _callback_problems(cfg, add)
    _writable(run_dir.parent, "output (run directory root)", add)
    _activation_problems(profile, lambda f, m: add(f, m, profile.path or profile.name))
    if profile.scheduler == "slurm":
        _live_problems(cfg, profile, spec, add, notes)
    _attention_notes(cfg, profile, spec, notes)
    return spec, problems, notes


def job_site_packages(profile: ClusterProfile) -> Optional[list[Path]]:
    """The site-packages folders of the job's Python environment, where the login node can see them; None if not."""
    import glob
    import sys

    from hpc_finetune.profile import expand_vars

    act = profile.activation
    if act.kind in ("venv", "conda") and act.prefix:
        try:
            prefix = Path(expand_vars(act.prefix, source=profile.path or profile.name, field="activation.prefix"))
        except UserError:
            return None
    elif act.kind == "none" and act.python and "/" in act.python:
        prefix = Path(act.python).parent.parent
    elif act.kind == "none" and not act.python:
        prefix = Path(sys.prefix)  # the job runs the interpreter running hpc-finetune
    else:
        return None  # a conda environment by name, or a bare `python`: not visible from here
    found = [Path(p) for p in glob.glob(str(prefix / "lib" / "python3*" / "site-packages"))]
    return found or None


def _attention_notes(cfg: RunConfig, profile: ClusterProfile, spec: Optional[JobSpec], notes: list[str]) -> None:
    """flash_attention_2 needs the flash-attn package on the node (transformers' hub-kernel fallback needs the
    network) and a GPU; the training core falls back to sdpa with one warning line. Say so before queueing."""
    if cfg.model.attn_implementation != "flash_attention_2":
        return
    if spec is not None and spec.gpus_per_node == 0:
        notes.append("warning: model.attn_implementation: flash_attention_2 needs GPUs; this CPU job will use sdpa")
        return
    sites = job_site_packages(profile)
    if sites is None:
        notes.append("model.attn_implementation: flash_attention_2: the job's environment is not visible from here; "
                     "without the flash-attn package on the node the job falls back to sdpa")
    elif not any(any(site.glob("flash_attn*")) for site in sites):
        notes.append(f"warning: model.attn_implementation: flash_attention_2, but flash-attn is not installed in "
                     f"the job's environment ({sites[0]}); the job will fall back to sdpa. Install it there "
                     "(pip install flash-attn) or set attn_implementation: sdpa")


def _live_problems(cfg: RunConfig, profile: ClusterProfile, spec: Optional[JobSpec], add, notes: list[str]) -> None:
    from hpc_finetune.livecheck import read_partitions, request_problems

    parts = read_partitions()
    if parts is None:
        notes.append("Slurm is not reachable from here (no scontrol/sinfo answer): live partition limits not checked")
        return
    res = cfg.resources
    if spec is not None:
        nodes, gpus, seconds, cpus, mem = spec.nodes, spec.gpus_per_node, spec.time_seconds, spec.cpus_per_task, \
            spec.mem
        partition = spec.partition
    else:  # the request broke a profile limit: still hold what was asked against the live cluster
        nodes, gpus = res.nodes, gpus_asked(profile, cfg)
        try:
            seconds = parse_time(res.time) if res.time else profile.default_seconds
        except UserError:
            seconds = None
        cpus, mem = node_request(profile, gpus)
        partition = res.partition or profile.partition
    part = request_problems(parts, partition=partition, nodes=nodes, gpus=gpus, gpu_type=profile.gpu_type,
                            seconds=seconds, cpus=cpus, mem=mem, add=add)
    if part is not None:
        notes.append(f"live {part.summary()}")


def _activation_problems(profile: ClusterProfile, add) -> None:
    """The environment the job activates, where the login node can see it (shared storage)."""
    from hpc_finetune.profile import expand_vars

    act = profile.activation

    def path_of(value: str) -> Optional[Path]:
        try:
            return Path(expand_vars(value, source=profile.path or profile.name, field="activation"))
        except UserError:
            return None  # a variable only the compute node has: cannot be checked here

    if act.kind == "venv" and act.prefix:
        p = path_of(act.prefix)
        if p is not None and not (p / "bin" / "activate").is_file():
            add("activation.prefix", f"venv {p} has no bin/activate: create it (python -m venv {p}) or fix the path")
    if act.kind == "conda" and act.prefix:
        p = path_of(act.prefix)
        if p is not None and not (p / "conda-meta").is_dir():
            add("activation.prefix", f"{p} is not a conda environment (no conda-meta/)")
    if act.conda_hook:
        p = path_of(act.conda_hook)
        if p is not None and not p.is_file():
            add("activation.conda_hook", f"{p} does not exist")
    if act.python and "/" in act.python:
        p = path_of(act.python)
        if p is not None and not os.access(p, os.X_OK):
            add("activation.python", f"{p} is not an executable file")


def _path_kind(path: Path) -> str:
    """'folder', 'file', 'missing', or why the path cannot be used (a symlink loop, a name too long, ...)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unusable ({exc.strerror or exc})"
    return "folder" if path.is_dir() else "file"


def _model_problems(cfg: RunConfig, profile: ClusterProfile, add) -> None:
    path = cfg.model.path
    if is_hub_id(path):
        if profile.offline:
            add("model.path", f"{path!r} is a hub id but cluster {profile.name!r} is offline; download it on the "
                              "login node (huggingface-cli download) and give the local folder")
        return
    folder = Path(path)
    kind = _path_kind(folder)
    if kind != "folder":
        add("model.path", {"missing": f"model folder {folder} does not exist",
                           "file": f"{folder} is a file; give the model's folder (with config.json and weights)"}
            .get(kind, f"model folder {folder} is {kind}"))
        return
    try:
        if not (folder / "config.json").is_file():
            add("model.path", f"{folder} has no config.json: not a transformers model folder")
        else:
            _max_length_problem(cfg, folder / "config.json", add)
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            add("model.path", f"{folder} has no weights (*.safetensors or *.bin)")
        tok = Path(cfg.model.tokenizer_path) if cfg.model.tokenizer_path else folder
        if not any((tok / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            add("model.tokenizer_path" if cfg.model.tokenizer_path else "model.path",
                f"{tok} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")
    except OSError as exc:
        add("model.path", f"cannot read {folder}: {exc.strerror or exc}")


def _max_length_problem(cfg: RunConfig, config_json: Path, add) -> None:
    """training.max_length must fit the model's position embeddings."""
    from hpc_finetune.records import read_json

    model = read_json(config_json)
    if not isinstance(model, dict):
        return  # a config.json that does not parse: the training core's loader says so
    text = model.get("text_config") if isinstance(model.get("text_config"), dict) else model
    limit = next((text[k] for k in ("max_position_embeddings", "n_positions", "max_sequence_length")
                  if isinstance(text.get(k), int) and not isinstance(text.get(k), bool)), None)
    if limit and cfg.training.max_length > limit:
        add("training.max_length", f"{cfg.training.max_length} tokens is more than the model takes "
                                   f"(max_position_embeddings {limit} in {config_json}); use at most {limit}")


def _data_problems(cfg: RunConfig, add, notes: list[str], full: bool) -> None:
    from hpc_finetune.datacheck import check_data_file

    for field in ("train_file", "eval_file"):
        value = getattr(cfg.data, field)
        if value:
            msg, note = check_data_file(Path(value), cfg.data, full=full)
            if msg:
                add(f"data.{field}", msg)
            elif note:
                notes.append(f"data: {note}")


def _callback_problems(cfg: RunConfig, add) -> None:
    """Callback files must be there (on shared storage, for every node); modules are imported on the node, whose
    Python environment may differ from the login node's, so they are not checked here."""
    for i, spec in enumerate(cfg.training.callbacks):
        parsed = parse_callback(spec)
        if parsed and parsed[2] and _path_kind(Path(parsed[0])) != "file":
            add(f"training.callbacks[{i}]", f"callback file {parsed[0]} does not exist")


def _writable(folder: Path, what: str, add) -> None:
    probe = folder
    while _path_kind(probe) == "missing" and probe != probe.parent:
        probe = probe.parent
    if _path_kind(probe) != "folder":
        add("output_dir", f"{what}: {folder} cannot be created ({probe} is {_path_kind(probe)})")
    elif not os.access(probe, os.W_OK):
        add("output_dir", f"{what}: {folder} is not writable (nearest existing folder {probe})")


def raise_problems(cfg: RunConfig, profile: ClusterProfile, run_dir: Path, *, config_source: str,
                   full: bool = False) -> tuple[JobSpec, list[str]]:
    """Raise every problem at once (one line each); else return the job spec and the notes of what was checked."""
    spec, problems, notes = find_problems(cfg, profile, run_dir, config_source=config_source, full=full)
    if problems:
        raise UserErrors(problems)
    assert spec is not None  # resolve's own errors are among the problems
    return spec, notes
