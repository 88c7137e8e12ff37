"""The job-array script of a sweep: one ``#SBATCH --array=0-M%K`` request whose tasks each run one member.

Everything a normal run's job.sh bakes in for its one run directory (HPCFT_RUN_DIR, WANDB_DIR and the other
``{run_dir}`` caches, the log files, the node program's folder, the failure handler's arguments) is taken here
from the member's run directory, which the script picks at run time from SLURM_ARRAY_TASK_ID (a ``case`` over
the members, each path quoted). Values reach the shell through the same ``q``/``qv`` filters as job.sh.

The member's program (its NodeProgram, pickled by submitit's DelayedSubmission) is written before sbatch to
RUN_DIR/jobs/member_submitted.pkl; the task copies it to the name submitit's task looks for,
RUN_DIR/jobs/ARRAY_TASK_submitted.pkl (submitit/core/utils.py JobPaths.submitted_pickle: ``%j_submitted.pkl``
with %j = SlurmJobEnvironment.job_id = ``{SLURM_ARRAY_JOB_ID}_{SLURM_ARRAY_TASK_ID}``), unless a checkpoint
already wrote one there (a requeued task, same id).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional, Sequence

from hpc_finetune import __version__, envvars, submitit_api
from hpc_finetune.envvars import CACHE_VARS, CHECKPOINT_SIGNAL, OFFLINE_VARS
from hpc_finetune.jobspec import JobSpec
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.render import cache_exports, environment, job_python

RUN_DIR_REF = "${" + envvars.RUN_DIR + "}"  # expanded on the node, after the member's case set it
MEMBER_PICKLE = "member_submitted.pkl"


@dataclasses.dataclass
class ArrayMember:
    index: int
    run_dir: str
    output_dir: str


def array_range(n: int, max_parallel: Optional[int]) -> str:
    """``0-3%2``: every member, at most ``max_parallel`` running at once (none: as many as Slurm allows)."""
    text = f"0-{n - 1}" if n > 1 else "0"
    return f"{text}%{max_parallel}" if max_parallel else text


def array_sbatch_options(spec: JobSpec, campaign: str, campaign_dir: Path, n: int, max_parallel: Optional[int],
                         extra: Sequence[tuple[str, Optional[str]]] = ()) -> list[tuple[str, Optional[str]]]:
    """A member's #SBATCH options for the whole array: the campaign's job name, ``--array``, and the batch log in
    the campaign folder (each task sends its own output to its member's run directory at once)."""
    opts: list[tuple[str, Optional[str]]] = []
    for key, value in spec.sbatch_options:
        if key == "job-name":
            opts.append((key, campaign))
            opts.append(("array", array_range(n, max_parallel)))
        elif key == "output":
            opts.append((key, str(campaign_dir / "jobs" / "%A_%a_log.out")))
        else:
            opts.append((key, value))
    return [*opts, *extra]


def array_script(profile: ClusterProfile, spec: JobSpec, campaign: str, campaign_dir: Path,
                 members: list[ArrayMember], max_parallel: Optional[int],
                 extra_sbatch: Sequence[tuple[str, Optional[str]]] = ()) -> str:
    """The whole array script. ``spec`` is any member's (they share resources: grid.py refuses resources.*);
    ``extra_sbatch``: more #SBATCH options for the array, e.g. ("dependency", "afterok:12") on a prepare job."""
    array_spec = dataclasses.replace(spec, run_dir=Path(RUN_DIR_REF), sbatch_options=array_sbatch_options(
        spec, campaign, campaign_dir, len(members), max_parallel, extra_sbatch))
    env_vars = cache_exports(profile, Path(RUN_DIR_REF))
    env_vars.append((CHECKPOINT_SIGNAL, profile.signal))
    if profile.offline:
        env_vars.extend(OFFLINE_VARS.items())
    env_vars.extend(profile.extra_env.items())
    return environment().get_template("slurm_array.sh.j2").render(
        version=__version__, profile=profile, spec=array_spec, env_vars=env_vars, campaign=campaign,
        members=members, python=job_python(profile), node_local=profile.storage.node_local,
        cache_vars=list(CACHE_VARS), submitit_task=submitit_api.TASK_MODULE,
        var={"run_dir": envvars.RUN_DIR, "output_dir": envvars.ARRAY_OUTPUT_DIR, "job": envvars.ARRAY_MEMBER_JOB,
             "job_ref": "${" + envvars.ARRAY_MEMBER_JOB + "}"},
    )


WAIT_LINE = re.compile(r"#SBATCH --(?:dependency|kill-on-invalid-dep)(?:=.*)?")  # chain.py dependency_options


def without_wait(script: str) -> str:
    """The array script without its ``#SBATCH`` wait on the campaign's prepare job, for a campaign's `requeue`: the
    prepare job ended long ago and may be gone from slurmctld's memory, where sbatch refuses the dependency or
    Slurm cancels the tasks for it (--kill-on-invalid-dep); its cache exists, or the member tokenizes by itself."""
    return "".join(line for line in script.splitlines(keepends=True) if not WAIT_LINE.fullmatch(line.rstrip("\n")))
