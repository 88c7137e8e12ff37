"""Cluster profiles (``clusters/*.yaml``): what a site looks like to a job script.

Profiles are found, in order, as a path given on the command line, in ``$HPC_FINETUNE_CLUSTERS`` (colon-separated
folders), in ``~/.config/hpc-finetune/clusters/``, and among the profiles shipped with hpc-finetune.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from hpc_finetune import memsize
from hpc_finetune.envvars import CACHE_VARS, DEFAULT_CHECKPOINT_SIGNAL, OFFLINE_VARS
from hpc_finetune.errors import UserError, shorten
from hpc_finetune.resources import data_dir
from hpc_finetune.schema import from_dict, opt, read_yaml
from hpc_finetune.timefmt import parse_time
from hpc_finetune.values import HOW_TO_PASS, check_string, secret_name

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Variables the job script sets itself: extra_env must not silently override them.
RESERVED_ENV = {"PATH": "the activation section sets up the environment",
                **{name: "set by `offline`" for name in OFFLINE_VARS},
                **{name: f"set by caches.{attr}" for name, attr in CACHE_VARS.items()}}


@dataclass
class Activation:
    kind: Literal["none", "conda", "venv"] = opt("none", "How the job activates its Python environment.")
    name: Optional[str] = opt(None, "conda: environment name (conda activate NAME).")
    prefix: Optional[str] = opt(None, "conda: environment prefix path; venv: the venv folder. $VARS are allowed.")
    conda_hook: Optional[str] = opt(
        None, "conda: file to source before `conda activate` (e.g. $HOME/miniforge3/etc/profile.d/conda.sh); "
              "default: `eval \"$(conda shell.bash hook)\"`, which works in a non-interactive batch shell.")
    python: Optional[str] = opt(None, "Python command inside the activated environment (e.g. python); "
                                      "default: the interpreter running hpc-finetune, as submitit does.")

    def validate(self, source: str, prefix: str) -> None:
        if self.kind == "conda" and not (self.name or self.prefix):
            raise UserError("conda activation needs `name` or `prefix`", source=source, field=f"{prefix}.kind")
        if self.kind == "venv" and not self.prefix:
            raise UserError("venv activation needs `prefix` (the venv folder)", source=source, field=f"{prefix}.prefix")
        if self.kind == "conda" and self.name and self.prefix:
            raise UserError("give conda `name` or `prefix`, not both", source=source, field=f"{prefix}.name")


@dataclass
class Storage:
    shared_root: str = opt("$HOME/hpc-finetune", "Shared storage seen by every node (e.g. /work/$USER); runs "
                                                 "and caches go below it. $VARS are expanded on the login node.")
    node_local: str = opt("${TMPDIR:-/tmp}", "Node-local scratch (e.g. $TMPDIR), expanded on each node at run time.")


@dataclass
class Caches:
    hf_home: str = opt("{shared_root}/.cache/huggingface", "HF_HOME. Placeholders: {shared_root}, {node_local}, {run_dir}.")
    hf_datasets_cache: str = opt("{shared_root}/.cache/huggingface/datasets", "HF_DATASETS_CACHE.")
    triton_cache_dir: str = opt("{node_local}/triton-cache", "TRITON_CACHE_DIR (created before launch; keep it "
                                                             "node-local: Triton's cache breaks on NFS).")
    torchinductor_cache_dir: str = opt("{node_local}/torchinductor-cache", "TORCHINDUCTOR_CACHE_DIR.")
    torch_extensions_dir: str = opt("{shared_root}/.cache/torch_extensions", "TORCH_EXTENSIONS_DIR: DeepSpeed's "
                                    "JIT-compiled ops (CPU Adam, ...), shared so they compile once, not per job.")
    wandb_dir: str = opt("{run_dir}", "WANDB_DIR: wandb's files, under the run directory by default.")


@dataclass
class StageResources:
    partition: Optional[str] = opt(None, "Partition of the CPU-only stage jobs (prepare, select, merge, report), e.g. "
                                         "cpu; default: the profile's partition. eval runs where the run ran.")
    cpus: Optional[int] = opt(None, "CPU cores of a CPU-only stage job; default: cpus_per_node_cpu_only.")
    mem: Optional[str] = opt(None, "Memory of a CPU-only stage job, e.g. 64G (merge holds the whole base model "
                                   "unquantized: about 2 bytes per parameter in bf16); default: mem_per_node_cpu_only.")
    time: Optional[str] = opt(None, "Time limit of a stage job; default: default_time.")

    def validate(self, source: str, prefix: str) -> None:
        if self.cpus is not None and self.cpus < 1:
            raise UserError("must be positive", source=source, field=f"{prefix}.cpus")
        if self.mem is not None and not memsize.is_valid(self.mem):
            raise UserError(memsize.HINT, source=source, field=f"{prefix}.mem")
        if self.time is not None:
            parse_time(self.time, source=source, field=f"{prefix}.time")


@dataclass
class ClusterProfile:
    name: str = opt("", "Profile name (defaults to the file name).")
    description: str = opt("", "One line about the site.")
    scheduler: Literal["slurm", "local"] = opt("slurm", "`slurm`, or `local` for this machine without a scheduler.")
    partition: Optional[str] = opt(None, "Default partition (--partition).")
    account: Optional[str] = opt(None, "Account to charge (--account).")
    qos: Optional[str] = opt(None, "Quality of service (--qos).")
    constraint: Optional[str] = opt(None, "Node features (--constraint), e.g. a100|h100.")
    gpu_request: Literal["gpus-per-node", "gres"] = opt(
        "gpus-per-node", "How GPUs are requested: --gpus-per-node=[type:]N, or --gres=gpu[:type]:N.")
    gpu_type: Optional[str] = opt(None, "GPU type in the request (e.g. a100), or none for any.")
    gpus_per_node: int = opt(0, "GPUs each node has (the most a job may ask for per node); 0 for CPU-only.")
    gpu_memory_gb: float = opt(0.0, "Memory of one GPU in GB, for `plan` (0: unknown).")
    max_nodes: int = opt(1, "Most nodes one job may use.")
    cpus_per_gpu: int = opt(8, "CPU cores requested per GPU.")
    cpus_per_node_cpu_only: int = opt(4, "CPU cores requested per node when a job asks for no GPU.")
    mem_per_gpu: str = opt("64G", "Host memory per GPU (--mem scaled by GPUs per node), e.g. 64G.")
    mem_per_node_cpu_only: str = opt("8G", "Host memory per node when a job asks for no GPU.")
    default_time: str = opt("01:00:00", "Time limit when the run config gives none.")
    max_time: str = opt("2-00:00:00", "Longest time limit the site allows.")
    modules: list[str] = opt([], "Modules to load, in order (`module load` each).")
    module_purge: bool = opt(False, "Run `module purge` before loading modules.")
    activation: Activation = opt(Activation, "Python environment activation on the compute node.")
    storage: Storage = opt(Storage, "Shared and node-local storage roots.")
    caches: Caches = opt(Caches, "Where caches go (exported before launch).")
    offline: bool = opt(True, "Compute nodes have no internet: set HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, "
                              "TRANSFORMERS_OFFLINE=1 and WANDB_MODE=offline.")
    signal: Literal["USR1", "USR2", "TERM", "INT", "HUP"] = opt(
        DEFAULT_CHECKPOINT_SIGNAL, "Signal Slurm sends before the time limit (the trainer saves a checkpoint on it).")
    signal_seconds: int = opt(300, "Seconds before the time limit that the signal arrives.")
    max_requeues: int = opt(5, "Most times a run requeues itself after a time limit or preemption.")
    retry_on_failure: int = opt(0, "Automatic requeues after a node failure or a crash (0: none).")
    mail_user: Optional[str] = opt(None, "Address Slurm mails about your jobs (--mail-user).")
    mail_type: Optional[str] = opt(None, "When Slurm mails (--mail-type), e.g. END,FAIL or ALL.")
    extra_sbatch: list[str] = opt([], "Extra sbatch options, one per item, e.g. --exclusive.")
    extra_env: dict[str, str] = opt({}, "Extra environment variables for the job (never secrets).")
    stages: StageResources = opt(StageResources, "Resources of the stage jobs that `--prepare`/`--then` chain to "
                                                 "a run (prepare, select, merge, eval, report).")

    path: Optional[str] = opt(None, "Set by the loader: the file this profile came from.")

    def validate(self, source: str, prefix: str) -> None:
        def err(field: str, msg: str) -> UserError:
            return UserError(msg, source=source, field=field)

        for field_name in ("default_time", "max_time"):
            parse_time(getattr(self, field_name), source=source, field=field_name)
        if self.default_seconds > self.max_seconds:
            raise err("default_time", f"{self.default_time} is longer than max_time {self.max_time}")
        for field_name in ("gpus_per_node", "max_nodes", "cpus_per_gpu", "cpus_per_node_cpu_only"):
            if getattr(self, field_name) < (1 if field_name != "gpus_per_node" else 0):
                raise err(field_name, "must be positive")
        for field_name in ("mem_per_gpu", "mem_per_node_cpu_only"):
            if not memsize.is_valid(getattr(self, field_name)):
                raise err(field_name, memsize.HINT)
        if self.signal_seconds < 10:
            raise err("signal_seconds", "must be at least 10 seconds to leave time for a checkpoint")
        if self.signal_seconds >= self.default_seconds:
            raise err("signal_seconds", f"{self.signal_seconds} s is not below default_time {self.default_time}: "
                                        "the signal would come before the job starts")
        for field_name in ("max_requeues", "retry_on_failure"):
            if getattr(self, field_name) < 0:
                raise err(field_name, "must be 0 or more")
        if self.scheduler == "local" and self.max_nodes != 1:
            raise err("max_nodes", "the local scheduler runs on one node; set max_nodes: 1")
        if self.mail_type is not None and not re.fullmatch(r"[A-Z_0-9]+(,[A-Z_0-9]+)*", self.mail_type):
            raise err("mail_type", f"{self.mail_type!r}: Slurm mail types separated by commas, e.g. END,FAIL")
        if self.mail_user is not None and not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+", self.mail_user):
            raise err("mail_user", f"{self.mail_user!r} is not a mail address")
        for opt_line in self.extra_sbatch:
            if not re.fullmatch(r"--[a-z][a-z0-9-]*(=\S.*)?", opt_line):
                raise err("extra_sbatch", f"{opt_line!r} is not a long sbatch option like --mail-type=END")
        for name in self.extra_env:
            if not ENV_NAME.match(name):
                raise err(f"extra_env.{name}", "not a valid environment variable name")
            if secret_name(name):
                raise err(f"extra_env.{name}", f"{name} looks like a secret; {HOW_TO_PASS}")
            if name.upper().startswith("HPCFT_") or name in RESERVED_ENV:
                why = RESERVED_ENV.get(name, "hpc-finetune's own variable")
                raise err(f"extra_env.{name}", f"{name} is set by hpc-finetune itself ({why}); extra_env may not "
                                               "override it")

    @property
    def default_seconds(self) -> int:
        return parse_time(self.default_time)

    @property
    def max_seconds(self) -> int:
        return parse_time(self.max_time)

    def shared_root_path(self) -> Path:
        """The shared root with $VARS and ~ expanded on the login node (an unset variable is an error)."""
        source = self.path or self.name
        path = Path(expand_vars(self.storage.shared_root, source=source, field="storage.shared_root")).expanduser()
        check_string(str(path), source=source, field="storage.shared_root (expanded)")
        return path


def expand_vars(text: str, *, source: str, field: str) -> str:
    """Expand $NAME, ${NAME} and ${NAME:-default} from this shell; an unset variable without default is an error."""

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        if os.environ.get(name):  # a value from the environment is checked like any other value
            return check_string(os.environ[name], source=source, field=f"{field} (from ${name} in this shell)")
        if m.group(2) is not None:
            return m.group(2)
        raise UserError(f"${name} is not set in this shell", source=source, field=field)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


def search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("HPC_FINETUNE_CLUSTERS", "").split(":") if p]
    dirs.append(Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "hpc-finetune" / "clusters")
    dirs.append(data_dir("clusters"))
    return dirs


def load_profile_file(path: Path) -> ClusterProfile:
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data["path"] = str(path)
    return from_dict(ClusterProfile, data, source=str(path))


def find_profile(name_or_path: str) -> ClusterProfile:
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return load_profile_file(candidate)
    for folder in search_path():
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name_or_path}{suffix}"
            try:
                found = path.is_file()
            except OSError:  # e.g. a name too long
                found = False
            if found:
                return load_profile_file(path)
    known = ", ".join(sorted(available_profiles())) or "none"
    raise UserError(f"unknown cluster {shorten(name_or_path, 60)!r}; known clusters: {known} "
                    f"(searched {', '.join(str(d) for d in search_path())})", source="--cluster")


def available_profiles() -> dict[str, Path]:
    """name -> file, earlier search folders shadowing later ones."""
    found: dict[str, Path] = {}
    for folder in search_path():
        if folder.is_dir():
            for path in sorted(folder.glob("*.y*ml")):
                found.setdefault(path.stem, path)
    return found
