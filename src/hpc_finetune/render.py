"""Render job scripts from the Jinja templates in ``templates/``.

Every value that reaches the shell passes one of two filters: ``q`` (single-quoted, nothing expands) or ``qv``
(double-quoted, only plain ``$NAME`` / ``${NAME}`` / ``${NAME:-word}`` references expand, for paths such as
``$TMPDIR`` that only the compute node knows). Templates use ``StrictUndefined``: a missing value is a bug, not an
empty string.
"""

from __future__ import annotations

import re
import shlex
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from hpc_finetune import __version__, submitit_api
from hpc_finetune import layout
from hpc_finetune.envvars import CACHE_VARS, CHECKPOINT_SIGNAL, OFFLINE_VARS, RUN_DIR
from hpc_finetune.jobspec import JobSpec
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.resources import data_dir
from hpc_finetune.strategies import accelerate_fsdp_config

_VAR_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[A-Za-z0-9_/.@%+=,-]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*")


def quote(value: Any) -> str:
    """Single-quote for the shell: the value is taken literally, whatever it holds."""
    return shlex.quote(str(value))


def quote_vars(value: Any) -> str:
    """Double-quote for the shell, leaving only simple variable references live (no $(...), no backticks)."""
    text = str(value)
    out, pos = ['"'], 0
    for m in _VAR_REF.finditer(text):
        out.append(_escape_dq(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_escape_dq(text[pos:]))
    out.append('"')
    return "".join(out)


def _escape_dq(text: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", text)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = quote
    env.filters["qv"] = quote_vars
    return env


def job_python(profile: ClusterProfile) -> str:
    return profile.activation.python or sys.executable


def cache_exports(profile: ClusterProfile, run_dir: Path) -> list[tuple[str, str]]:
    shared = str(profile.shared_root_path())
    out = []
    for var, attr in CACHE_VARS.items():
        value = getattr(profile.caches, attr)
        value = value.replace("{shared_root}", shared).replace("{node_local}", profile.storage.node_local)
        out.append((var, value.replace("{run_dir}", str(run_dir))))
    return out


def job_script(profile: ClusterProfile, spec: JobSpec) -> str:
    """The whole job script: ``#SBATCH`` header (slurm) or plain bash (local), env set-up and the launch."""
    env_vars = cache_exports(profile, spec.run_dir)
    env_vars.append((RUN_DIR, str(spec.run_dir)))
    env_vars.append((CHECKPOINT_SIGNAL, profile.signal))
    if profile.offline:
        env_vars.extend(OFFLINE_VARS.items())
    env_vars.extend(profile.extra_env.items())
    template = "slurm.sh.j2" if profile.scheduler == "slurm" else "local.sh.j2"
    return environment().get_template(template).render(
        version=__version__, profile=profile, spec=spec, env_vars=env_vars,
        node_local=profile.storage.node_local, jobs_dir=str(spec.run_dir / layout.JOBS), cache_vars=list(CACHE_VARS),
        python=job_python(profile), submitit_task=submitit_api.TASK_MODULE,
        submitit_local_controller=submitit_api.LOCAL_CONTROLLER_MODULE,
    )


def launch_files(cfg: Any, spec: JobSpec) -> dict[str, str]:
    """The launcher config files the job's launch plan names (``spec.launch.files``), rendered: accelerate YAML (and
    DeepSpeed JSON) for multi-process runs; name -> text, written into the run directory."""
    launch, plan = cfg.launch, spec.launch
    if not plan.files:
        return {}
    env = environment()
    ctx = dict(spec=spec, launch=launch, uses_lora=cfg.uses_lora,
               fsdp=accelerate_fsdp_config(cfg) if launch.strategy == "fsdp" else {},
               mixed_precision={"bf16": "bf16", "fp16": "fp16", "fp32": "'no'"}[cfg.training.precision],
               ds_config_path=str(plan.path(layout.DEEPSPEED_CONFIG)))
    templates = {layout.ACCELERATE_CONFIG: f"launch/accelerate_{launch.strategy}.yaml.j2",
                 layout.DEEPSPEED_CONFIG: "launch/deepspeed.json.j2"}
    return {name: env.get_template(templates[name]).render(ctx) for name in plan.files}
