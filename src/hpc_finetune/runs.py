"""The run service: everything the CLI does to runs, behind functions the CLI only calls and prints.

- ``prepare_run(request)``: config + profile + flags -> one ``PreparedRun`` (resolved ONCE: the job spec, its
  launch plan, the job script, the node program, the files of the run directory). No side effects: no registry
  file, no directory (`render`, `plan`, `check`, `submit --dry-run`). ``check=True`` runs the pre-flight checks
  against that same spec.
- ``prepare_at(profile, cfg, run_dir, source=...)``: the same for a given run directory (what a campaign member, a
  requeue and the tests build on).
- ``submit_run(prepared)``: claim the directory, write, submit, record (``create_run``), or leave nothing behind.
- ``requeue_run(run)``, ``cancel_run(run)``; ``wait_run(registry, rec)``, ``status_rows(registry, run)`` (from
  runstatus.py, which `status` imports alone: it stays light).
- ``submit_eval_run(...)``: `eval --submit`, a one-process job of its own, through the same ``create_run``.

``create_run`` (shared by `submit` and `eval --submit`): a run directory is claimed atomically (two submits of one
name at once get ``name`` and ``name-2``); SIGTERM/SIGHUP while it is being written raise SystemExit so that it is
removed; while the scheduler takes the job, and until the job is recorded, they are held, then honoured (exit
128+N). A submit killed mid-way leaves either nothing or a whole, recorded run, never an empty directory.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from hpc_finetune import layout
from hpc_finetune.errors import UserError
from hpc_finetune.files import write_atomic
from hpc_finetune.records import Registry, RunRecord, Segment, claim_run_dir, next_run_id, now
from hpc_finetune.runstatus import status_rows, succeeded, wait_run  # noqa: F401 - part of the service's API
from hpc_finetune.states import LIVE, REQUEUEABLE, RUNNING, State

if TYPE_CHECKING:  # `status`, `cancel` and `requeue` of a running job need none of these: imported where used
    from hpc_finetune.jobspec import JobSpec
    from hpc_finetune.profile import ClusterProfile
    from hpc_finetune.runconfig import RunConfig

# Command-line flags -> the config key they set: they enter the config like `--set`, so the same checks apply.
FLAGS = {"nodes": "resources.nodes", "gpus": "resources.gpus_per_node", "time": "resources.time",
         "partition": "resources.partition"}


@dataclass
class RunRequest:
    """What a user asks for: a run config, ``--set`` overrides, a cluster and the resource flags."""

    config: Path
    sets: list[str] = field(default_factory=list)
    cluster: Optional[str] = None  # default: $HPC_FINETUNE_CLUSTER, else "local"
    nodes: Optional[int] = None
    gpus: Optional[int] = None
    time: Optional[str] = None
    partition: Optional[str] = None


@dataclass
class PreparedRun:
    """One resolved run for one run directory: everything a submit writes and sends, nothing created yet."""

    profile: ClusterProfile
    cfg: RunConfig  # with output_dir filled in (what run.yaml holds)
    spec: JobSpec  # spec.launch: the launch plan
    script: str
    program: Any  # picklable callable each node runs (job/launch.py NodeProgram)
    source: str
    notes: list[str] = field(default_factory=list)  # what the pre-flight check read (prepare_run(check=True))

    @property
    def files(self) -> dict[str, str]:
        """Name -> text of every file the run directory gets: run.yaml, profile.yaml, job.sh, the launch configs."""
        from hpc_finetune.render import launch_files

        return {layout.RUN_YAML: config_yaml(self.cfg), layout.PROFILE_YAML: profile_yaml(self.profile),
                layout.JOB_SCRIPT: self.script, **launch_files(self.cfg, self.spec)}

    def record(self) -> RunRecord:
        spec = self.spec
        return RunRecord(run_id=spec.run_id, name=self.cfg.name, cluster=self.profile.name,
                         scheduler=self.profile.scheduler, run_dir=str(spec.run_dir), output_dir=str(spec.output_dir),
                         created=now(), nodes=spec.nodes, gpus_per_node=spec.gpus_per_node,
                         processes_per_node=spec.processes_per_node, time_seconds=spec.time_seconds)


def config_yaml(cfg: RunConfig) -> str:
    import yaml

    from hpc_finetune.schema import to_dict

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def profile_yaml(profile: ClusterProfile) -> str:
    import yaml

    from hpc_finetune.schema import to_dict

    return yaml.safe_dump(to_dict(profile), sort_keys=False)


def load_request(request: RunRequest) -> tuple[ClusterProfile, RunConfig]:
    from hpc_finetune.profile import find_profile
    from hpc_finetune.runconfig import load_run_config

    flags = {key: (f"--{flag}", getattr(request, flag)) for flag, key in FLAGS.items()}
    cfg = load_run_config(request.config, request.sets, flags=flags)
    profile = find_profile(request.cluster or os.environ.get("HPC_FINETUNE_CLUSTER") or "local")
    return profile, cfg


def prepare_at(profile: ClusterProfile, cfg: RunConfig, run_dir: Path, *, source: str,
               spec: Optional[JobSpec] = None,
               extra_sbatch: Sequence[tuple[str, Optional[str]]] = ()) -> PreparedRun:
    """The run ``cfg`` on ``profile`` in ``run_dir``: resolved (unless ``spec``, already resolved for this directory,
    is given), rendered, its node program built. ``cfg`` is not changed (the prepared copy gets the output_dir).

    ``extra_sbatch``: more ``#SBATCH`` options after the profile's, as (option, value or None) pairs, e.g.
    ``("dependency", "afterok:123")``, ``("kill-on-invalid-dep", "yes")``, ``("array", "0-3%2")`` (values are
    quoted by the template like every other)."""
    from hpc_finetune.job.launch import NodeProgram
    from hpc_finetune.jobspec import resolve
    from hpc_finetune.render import job_python, job_script

    spec = spec or resolve(profile, cfg, run_dir, source=source)
    if extra_sbatch:
        spec = dataclasses.replace(spec, sbatch_options=[*spec.sbatch_options, *extra_sbatch])
    cfg = copy.deepcopy(cfg)
    cfg.output_dir = str(spec.output_dir)
    plan = spec.launch
    program = NodeProgram(run_dir=str(run_dir), nodes=plan.nodes, processes_per_node=plan.processes_per_node,
                          gpus_per_node=spec.gpus_per_node, strategy=plan.strategy, launcher=cfg.launch.launcher,
                          python=job_python(profile), output_dir=str(spec.output_dir),
                          time_seconds=spec.time_seconds, signal_seconds=profile.signal_seconds,
                          max_requeues=profile.max_requeues)
    return PreparedRun(profile, cfg, spec, job_script(profile, spec), program, source)


def prepare_run(request: RunRequest, *, check: bool = False, full_check: bool = False,
                registry: Optional[Registry] = None) -> PreparedRun:
    """The run a submit of ``request`` would create now, in the directory it would claim now; nothing is created.
    ``check``: the pre-flight checks, against this same spec (every problem at once, raised as UserErrors)."""
    from hpc_finetune.jobspec import runs_root

    profile, cfg = load_request(request)
    root = runs_root(profile)
    run_dir = root / next_run_id(registry or Registry(), root, cfg.name)
    source = str(request.config)
    if not check:
        return prepare_at(profile, cfg, run_dir, source=source)
    from hpc_finetune.check import raise_problems

    spec, notes = raise_problems(cfg, profile, run_dir, config_source=source, full=full_check)
    prep = prepare_at(profile, cfg, run_dir, source=source, spec=spec)
    prep.notes = notes
    return prep


def submit_run(prepared: PreparedRun, *, registry: Optional[Registry] = None) -> RunRecord:
    """Submit a prepared run: claim its directory, write its files, submit, record (nothing left on failure).

    The directory claimed is the prepared one unless another submit of the same name took it in between; then the
    run is prepared again for the directory it got (same config and profile: the profile's limits do not depend on
    the directory, so the checks hold). The record names the directory the run got."""
    registry = registry or Registry()

    def build(run_dir: Path) -> NewRun:
        prep = prepared if run_dir == prepared.spec.run_dir else \
            prepare_at(prepared.profile, prepared.cfg, run_dir, source=prepared.source)
        return NewRun(record=prep.record(), script=prep.script, program=prep.program,
                      max_requeues=prep.profile.max_requeues, files=prep.files)

    return create_run(registry, prepared.spec.run_dir.parent, prepared.cfg.name, build)


@dataclass
class NewRun:
    """What a command builds for a claimed run directory."""

    record: RunRecord  # no segment yet
    script: str
    program: Any  # picklable callable that runs on each node
    max_requeues: int
    files: dict[str, str] = field(default_factory=dict)  # name -> text, written atomically into the run directory


_TERM: dict = {}


@contextlib.contextmanager
def _terminate_as_exception():
    def handler(signum, frame):  # noqa: ARG001
        if _TERM.get("deferred"):
            _TERM["pending"] = signum
            return
        raise SystemExit(128 + signum)

    sigs = (signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    _TERM.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pending = _TERM.pop("pending", None)
        _TERM.clear()
        if pending:
            raise SystemExit(128 + pending)


def create_run(registry: Registry, runs_root: Path, name: str, build: Callable[[Path], NewRun], *,
               hold: bool = False, recorded: Optional[Callable[[RunRecord], None]] = None) -> RunRecord:
    """Claim ``runs_root/name[-N]``, let ``build`` render the run for it, write, submit, record; roll back on any
    failure. Returns the record, in the index, with its first segment. ``hold``: write and record it without a job
    (a local chain's job, which the local runner submits when the job before it has completed). ``recorded``: told
    the record as soon as it is in the index, before a SIGTERM/SIGHUP deferred during sbatch is raised (a chain
    that rolls back on that exit must know this job was queued)."""
    from hpc_finetune.scheduler import get_scheduler

    with _terminate_as_exception():
        _TERM["deferred"] = True  # a signal between mkdir and the try below must not leave the directory behind
        run_dir = claim_run_dir(registry, runs_root, name)  # atomic: ours alone from here
        try:
            _TERM["deferred"] = False
            if _TERM.pop("pending", None):
                raise SystemExit(143)
            new = build(run_dir)
            for fname, text in new.files.items():
                write_atomic(run_dir / fname, text)
            rec = new.record
            rec.save()
            if hold:
                registry.upsert(rec)
                if recorded:
                    recorded(rec)
                return rec
            _TERM["deferred"] = True  # the scheduler may accept the job, which must then be recorded whole
            job_id = get_scheduler(rec.scheduler).submit(run_dir, new.script, new.program,
                                                          time_seconds=rec.time_seconds,
                                                          max_requeues=new.max_requeues)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written: the directory was ours alone
            raise
        rec.segments.append(Segment(job_id=job_id, started_by="submit", submitted=now()))
        rec.save()
        registry.upsert(rec)
        if recorded:
            recorded(rec)
    return rec


@dataclass
class Requeued:
    record: RunRecord
    job_id: str
    in_place: bool  # True: the running job was requeued (scontrol requeue); False: a new job in the run directory


def prepare_existing(run_dir: Path) -> PreparedRun:
    """A submitted run prepared again from its own directory (run.yaml, profile.yaml), by this version."""
    from hpc_finetune.profile import load_profile_file
    from hpc_finetune.runconfig import load_run_config

    profile = load_profile_file(run_dir / layout.PROFILE_YAML)
    cfg = load_run_config(run_dir / layout.RUN_YAML)
    return prepare_at(profile, cfg, run_dir, source=str(run_dir / layout.RUN_YAML))


def requeue_run(run: str, *, registry: Optional[Registry] = None) -> Requeued:
    """Requeue a running job in place, or start a new job for an ended run in the same run directory.

    The rule for a new job: the run is prepared again from the files its directory holds (run.yaml, profile.yaml) by
    this version, and the job script, launch configs and node program all come from that one preparation; job.sh
    and the launch configs are rewritten (atomically) before the submit, so the directory shows what runs. (It used
    to send the old job.sh with a freshly built node program: two versions' halves in one job.)"""
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import current

    registry = registry or Registry()
    rec = current(registry, run)
    scheduler = get_scheduler(rec.scheduler)
    if rec.kind != "train":
        raise UserError(f"run {rec.run_id} is an {rec.kind} job; run `hpc-finetune {rec.kind} ... --submit` again "
                        "instead of requeuing it", source="requeue")
    if rec.state == RUNNING:
        scheduler.requeue_running(rec.job_id)
        return Requeued(rec, rec.job_id, in_place=True)
    if rec.state in LIVE:
        raise UserError(f"run {rec.run_id} is {rec.state} (job {rec.job_id}); it will start on its own",
                        source="requeue")
    if rec.state not in REQUEUEABLE:
        raise UserError(f"run {rec.run_id} is {rec.state}; only runs that ended as "
                        f"{', '.join(sorted(REQUEUEABLE))} can be requeued", source="requeue")
    run_dir = Path(rec.run_dir)
    prep = prepare_existing(run_dir)
    for name, text in prep.files.items():
        if name not in (layout.RUN_YAML, layout.PROFILE_YAML):  # the run's own record of what was asked
            write_atomic(run_dir / name, text)
    job_id = scheduler.submit(run_dir, prep.script, prep.program, time_seconds=prep.spec.time_seconds,
                              max_requeues=prep.profile.max_requeues)
    rec.segments.append(Segment(job_id=job_id, started_by="requeue", submitted=now()))
    rec.state, rec.reason = State.PENDING, ""
    rec.requeues += 1
    rec.save()
    registry.upsert(rec)
    return Requeued(rec, job_id, in_place=False)


def cancel_run(run: str, *, registry: Optional[Registry] = None) -> RunRecord:
    """Cancel the run's live job; the record says it was cancelled by the user."""
    from hpc_finetune.scheduler import get_scheduler
    from hpc_finetune.tracking import current

    registry = registry or Registry()
    rec = current(registry, run)
    if rec.state not in LIVE:
        raise UserError(f"run {rec.run_id} is already {rec.state}; nothing to cancel", source="cancel")
    if not rec.segments:  # a held job of a local chain (no job yet): the local runner will not start it
        rec.state, rec.reason = State.CANCELLED, "cancelled by user"
        rec.save()
        registry.upsert(rec)
        return rec
    get_scheduler(rec.scheduler).cancel(rec.job_id, rec.path.parent)
    rec.reason = "cancelled by user"
    from hpc_finetune.campaigns.arrays import is_task

    if rec.state == State.PENDING and is_task(rec.job_id):
        # an array task cancelled while still inside the array's pending record never gets a sacct row of its own
        # (Slurm 22.05 only clears its bit), so nothing would ever tell `status` it ended: say it here
        rec.state = rec.segments[-1].state = State.CANCELLED
    rec.save()
    registry.upsert(rec)
    return rec


def submit_eval_run(files: Any, config: Path, model: Path, out: Path, flags: list[str], *, cluster: Optional[str],
                    time: Optional[str], registry: Registry) -> RunRecord:
    """`eval --submit`: render and submit the eval job as a run of its own (through create_run, like `submit`:
    atomic directory claim, nothing left behind on failure); returns its record (already in the index)."""
    import dataclasses
    import re

    from hpc_finetune.evaljob import EvalProgram
    from hpc_finetune.jobspec import gpus_asked, resolve, runs_root
    from hpc_finetune.profile import find_profile
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.render import job_python, job_script

    name = cluster or (files.record.cluster if files.record else None)
    if not name:
        raise UserError(f"{files.run_dir} is not a submitted run: name the cluster with --cluster", source="eval")
    # an eval job is never requeued or retried: it is cheap to submit again, and a requeue would not resume it
    profile = dataclasses.replace(find_profile(name), max_requeues=0, retry_on_failure=0)
    cfg = load_run_config(config, [])
    res = cfg.resources
    res.nodes, res.gpus_per_node = 1, (1 if gpus_asked(profile, cfg) > 0 else 0)
    res.time = time or res.time
    cfg.launch.processes_per_node = 1
    # a valid run name whatever the evaluated folder is called: letters, digits, . _ - and at most 64 characters
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", files.name).strip("-._")[:50] or "run"

    def build(run_dir: Path) -> NewRun:
        cfg.name, cfg.output_dir = run_dir.name, str(out)
        spec = resolve(profile, cfg, run_dir, source=str(config))
        script = job_script(profile, spec)
        program = EvalProgram(argv=[str(run_dir / layout.RUN_YAML), "--model", str(model), "--out", str(out),
                                    *flags], python=job_python(profile))
        rec = RunRecord(run_id=run_dir.name, name=run_dir.name, cluster=profile.name, scheduler=profile.scheduler,
                        run_dir=str(run_dir), output_dir=str(out), created=now(), nodes=1,
                        gpus_per_node=spec.gpus_per_node, processes_per_node=1, time_seconds=spec.time_seconds,
                        kind="eval")
        return NewRun(record=rec, script=script, program=program, max_requeues=0,
                      files={layout.RUN_YAML: config_yaml(cfg), layout.PROFILE_YAML: profile_yaml(profile),
                             layout.JOB_SCRIPT: script})

    return create_run(registry, runs_root(profile), f"{base}-eval", build)
