"""Chains: a run's stages (campaigns/stages.py) queued as dependent jobs, each a run of its own.

On Slurm every stage job is submitted at once with ``--dependency=afterok:<the job before>`` (``afterany`` for
``select``) and ``--kill-on-invalid-dep=yes``, so slurmctld holds the chain and cancels its tail when a job fails
(dev cluster, Slurm 22.05: the dependents end CANCELLED, Reason ``Dependency``, never started). On the local profile
nothing would hold a dependency once the CLI exits: the records are written the same way, held (no job yet), and
one detached local runner (job/runner.py) starts each job when the one before has completed (campaigns/localchain.py
is the command it runs per job).

A chain is a campaign (contract item 1): ``CAMPAIGN/campaign.json`` among the run directories (kind ``chain``), its
jobs are runs ``CAMPAIGN-<stage>`` whose records name the campaign, their stage (``kind``), the run ids they wait on
(``after``) and the exact ``--dependency`` value.

API (submit calls it; sweeps' `sweep` calls ``options_from_args`` and ``sweep_with_stages``)::

    options_from_args(args) -> Optional[StageOptions]   the --prepare/--then/--follow/--stage-* flags (cli/args.py)
    check_stages(profile, cfg, opts, source)            resolve every stage job against the profile; one error line
                                                        before anything is queued
    queue_stages(registry, profile, cfg, opts, campaign_dir, follows, sweep=None) -> list[RunRecord]
        queue the stages after already-queued training run(s) ``follows``: one chain after a plain run; after a
        sweep (``sweep`` = the array's job id) a select job (afterany) then one chain, or one chain per member
        (opts.follow == "every")
    sweep_with_stages(req, registry, opts)              `sweep` with stages: submit_sweep's hooks + queue_stages;
                                                        one prepare job per distinct tokenized cache (cachekey.py)
    describe_prepares(plan, opts) -> str                what `sweep --dry-run` says about the stages
    roll_back(registry, records, array=None)            nothing half-queued: cancel, mark CANCELLED with the reason

A run that gets a new job later (`hpc-finetune requeue`) has its stages re-wired by campaigns/rewire.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from hpc_finetune.campaigns.stages import STAGES, chain_of, parse_then
from hpc_finetune.errors import UserError
from hpc_finetune.jobspec import JobSpec, gpus_asked, resolve
from hpc_finetune.profile import ClusterProfile
from hpc_finetune import cachekey, layout
from hpc_finetune.records import Registry, RunRecord, now
from hpc_finetune.runconfig import RunConfig
from hpc_finetune.states import CANCELLED

if TYPE_CHECKING:
    from hpc_finetune.campaigns.sweep import SweepPlan

PROGRAM_FILE = "program.pkl"  # a held local job's node program (the local runner submits it later)
BASE_MAX = 50  # room for "-prepare" / "-2" within a run name's 64 characters
QUEUE_FAILED = "the chain could not be queued"  # the reason of every job cancelled because a later one failed


@dataclass
class StageOptions:
    then: tuple[str, ...] = ()
    prepare: bool = False
    follow: str = "best"  # after a sweep: the best member (select) or every member
    partition: Optional[str] = None  # CPU stages' partition (else profile stages.partition, else the profile's)
    time: Optional[str] = None
    mem: Optional[str] = None
    cpus: Optional[int] = None

    @property
    def any(self) -> bool:
        return bool(self.then or self.prepare)


def options_from_args(args: argparse.Namespace) -> Optional[StageOptions]:
    then = parse_then(args.then) if getattr(args, "then", None) else ()
    opts = StageOptions(then=then, prepare=bool(getattr(args, "prepare", False)),
                        follow=getattr(args, "follow", None) or "best",
                        partition=getattr(args, "stage_partition", None), time=getattr(args, "stage_time", None),
                        mem=getattr(args, "stage_mem", None), cpus=getattr(args, "stage_cpus", None))
    if not opts.any:
        for flag in ("stage_partition", "stage_time", "stage_mem", "stage_cpus"):
            if getattr(args, flag, None) is not None:
                raise UserError("only with --prepare or --then (there is no stage job to apply it to)",
                                source="--" + flag.replace("_", "-"))
        return None
    if opts.mem is not None:
        from hpc_finetune import memsize

        if not memsize.is_valid(opts.mem):
            raise UserError(f"{opts.mem!r}: {memsize.HINT}", source="--stage-mem")
    if opts.cpus is not None and opts.cpus < 1:
        raise UserError("must be positive", source="--stage-cpus")
    return opts


# --- one stage job: resources, spec, script ---------------------------------------------------------------------
def stage_profile(profile: ClusterProfile, stage: str, opts: StageOptions) -> ClusterProfile:
    """The profile a stage job is rendered with: never requeued or retried (cheap to run again; a requeue would not
    resume it), and a CPU stage's cores and memory from the profile's ``stages`` section or the flags."""
    p = dataclasses.replace(profile, max_requeues=0, retry_on_failure=0)
    if not STAGES[stage].gpu:
        s = profile.stages
        p = dataclasses.replace(p, cpus_per_node_cpu_only=opts.cpus or s.cpus or profile.cpus_per_node_cpu_only,
                                mem_per_node_cpu_only=opts.mem or s.mem or profile.mem_per_node_cpu_only)
    return p


def stage_config(profile: ClusterProfile, cfg: RunConfig, stage: str, opts: StageOptions) -> RunConfig:
    """The run config a stage job is resolved from: the training run's, on one node with one process; one GPU for
    a GPU stage when the run had GPUs, none otherwise; the stage partition and time."""
    out = copy.deepcopy(cfg)
    res = out.resources
    gpu = STAGES[stage].gpu and gpus_asked(profile, cfg) > 0
    res.nodes, res.gpus_per_node = 1, (1 if gpu else 0)
    if not STAGES[stage].gpu:
        res.partition = opts.partition or profile.stages.partition or profile.partition
    res.time = opts.time or profile.stages.time or profile.default_time
    out.launch.processes_per_node = 1
    out.launch.strategy = "ddp"  # one process: no sharding (fsdp would also refuse a CPU-only job)
    return out


def dependency_options(dependency: str) -> list[tuple[str, Optional[str]]]:
    """The #SBATCH options of a job that waits: Slurm itself cancels it when the dependency can never be met."""
    return [("dependency", dependency), ("kill-on-invalid-dep", "yes")] if dependency else []


def with_dependency(spec: JobSpec, dependency: str) -> JobSpec:
    spec.sbatch_options = [o for o in spec.sbatch_options if o[0] not in ("dependency", "kill-on-invalid-dep")]
    spec.sbatch_options += dependency_options(dependency)
    return spec


def dependency_value(stage: str, job_ids: list[str]) -> str:
    if not job_ids:
        return ""
    return ("afterany:" if STAGES[stage].after_any else "afterok:") + ":".join(job_ids)


def check_stages(profile: ClusterProfile, cfg: RunConfig, opts: StageOptions, source: str, *,
                 sweep: bool = False) -> list[str]:
    """Resolve every stage job of the chain against the profile now (limits, partition, time): one clear error
    before anything is queued. Returns the chain's stage names, in order."""
    names = chain_of(opts.then, prepare=opts.prepare, select=sweep and opts.follow == "best")
    if "merge" in names and not cfg.uses_lora:
        raise UserError(f"--then merge: method {cfg.method} trains the whole model, so there is no adapter to merge "
                        "(leave merge out)", source=source, field="method")
    for stage in names:
        if stage == "train":
            continue
        where = f"{source} (the {stage} stage: profile `stages`, --stage-partition/--stage-time)"
        resolve(stage_profile(profile, stage, opts), stage_config(profile, cfg, stage, opts), Path("/nonexistent"),
                source=where)
    # a sweep's --prepare is one job per distinct tokenized cache among the members (cachekey.groups): members
    # that differ only in settings outside the cache key (learning rate, rank, training.seed unless it draws the
    # eval split) share one
    return names


def save_program(run_dir: Path, program: object) -> None:
    """Keep the job's node program beside it: the local runner submits a held job later, and a requeue of the run
    before it submits a cancelled stage again."""
    (run_dir / layout.JOBS).mkdir(parents=True, exist_ok=True)
    with open(run_dir / layout.JOBS / PROGRAM_FILE, "wb") as f:
        pickle.dump(program, f)


def load_program(run_dir: Path) -> object:
    with open(Path(run_dir) / layout.JOBS / PROGRAM_FILE, "rb") as f:
        return pickle.load(f)


# --- queuing -----------------------------------------------------------------------------------------------------
def _submit_or_hold(registry: Registry, runs_root: Path, name: str, build: Callable, scheduler: str,
                    recorded: Optional[Callable[[RunRecord], None]] = None) -> RunRecord:
    from hpc_finetune.runs import create_run

    return create_run(registry, runs_root, name, build, hold=(scheduler == "local"), recorded=recorded)


def queue_stage(registry: Registry, profile: ClusterProfile, cfg: RunConfig, opts: StageOptions, stage: str, *,
                runs_root: Path, base: str, campaign: str, campaign_dir: Path, chain: tuple[str, ...],
                after: list[RunRecord], target: Optional[RunRecord], source: str,
                dependency: Optional[str] = None, name: Optional[str] = None,
                recorded: Optional[Callable[[RunRecord], None]] = None) -> RunRecord:
    """Render, write and queue (or hold, locally) one stage job after the jobs of ``after``; ``recorded`` is told
    the record as soon as it is in the index (runs.create_run)."""
    from hpc_finetune.render import job_python, job_script
    from hpc_finetune.runs import NewRun, config_yaml, profile_yaml
    from hpc_finetune.job.stagejob import StageProgram

    sprofile = stage_profile(profile, stage, opts)
    scfg = stage_config(profile, cfg, stage, opts)
    if dependency is None:
        dependency = dependency_value(stage, [r.job_id for r in after if r.job_id]) \
            if profile.scheduler == "slurm" else ""

    def build(run_dir: Path) -> NewRun:
        scfg.name = run_dir.name
        scfg.output_dir = str(layout.default_output_dir(run_dir))
        spec = with_dependency(resolve(sprofile, scfg, run_dir, source=source), dependency)
        script = job_script(sprofile, spec)
        # prepare tokenizes from its own copy of the run config: the cache key holds no resource or launch field
        tgt_dir, tgt_out = (target.run_dir, target.output_dir) if target else \
            ((str(run_dir), scfg.output_dir) if stage == "prepare" else ("", ""))
        program = StageProgram(stage=stage, run_dir=tgt_dir, output_dir=tgt_out, chain=list(chain),
                               campaign_dir=str(campaign_dir),
                               selected=target is None and stage not in ("select", "prepare"),
                               python=job_python(sprofile))
        save_program(run_dir, program)
        rec = RunRecord(run_id=run_dir.name, name=run_dir.name, cluster=sprofile.name, scheduler=sprofile.scheduler,
                        run_dir=str(run_dir), output_dir=scfg.output_dir, created=now(), nodes=1,
                        gpus_per_node=spec.gpus_per_node, processes_per_node=1, time_seconds=spec.time_seconds,
                        kind=stage, campaign=campaign, after=[r.run_id for r in after], dependency=dependency)
        return NewRun(record=rec, script=script, program=program, max_requeues=0,
                      files={layout.RUN_YAML: config_yaml(scfg), layout.PROFILE_YAML: profile_yaml(sprofile),
                             layout.JOB_SCRIPT: script})

    return _submit_or_hold(registry, runs_root, name or f"{base}-{stage}", build, profile.scheduler, recorded)


def queue_stages(registry: Registry, profile: ClusterProfile, cfg: RunConfig, opts: StageOptions,
                 campaign_dir: Path, follows: list[RunRecord], *, source: str, sweep: Optional[str] = None,
                 prepared: Sequence[RunRecord] = (), max_parallel: int = 0,
                 out: Optional[list[RunRecord]] = None) -> list[RunRecord]:
    """Queue the stages of ``opts.then`` after the queued training run(s) ``follows`` (the campaign's members).
    Returns the stage records in queuing order; ``out``, if given, gets each one as soon as it is queued (so a
    caller can roll back the ones queued before a failure).

    On the local profile the runs are held (``create_run(..., hold=True)`` and ``save_program``: no job yet) and
    this starts the ONE local runner that owns them all: the prepare jobs ``prepared``, every run of ``follows``
    (a local sweep's members: pass them held, start no runner of your own; ``max_parallel`` bounds how many jobs
    run at once) and the stages. ``sweep``: the array's job id on Slurm; on the local profile any non-None value
    (e.g. "local")."""
    campaign = campaign_dir.name
    runs_root = campaign_dir.parent
    select = sweep is not None and opts.follow == "best" and bool(opts.then)
    chain = chain_of(opts.then, prepare=opts.prepare, select=select)
    queued: list[RunRecord] = []

    def add(rec: RunRecord) -> None:
        queued.append(rec)
        if out is not None:
            out.append(rec)

    chains: list[tuple[str, list[RunRecord], Optional[RunRecord]]] = []  # (base name, jobs before, target run)
    if select:
        # afterany on the array job itself: it fires once every task has ended, however (afterok never would
        # once one task failed; dev cluster, Slurm 22.05)
        sel = queue_stage(registry, profile, cfg, opts, "select", runs_root=runs_root, base=campaign[:BASE_MAX],
                          campaign=campaign, campaign_dir=campaign_dir, chain=chain, after=follows, target=None,
                          source=source, dependency=f"afterany:{sweep}" if profile.scheduler == "slurm" else "",
                          recorded=add)
        chains.append((campaign[:BASE_MAX], [sel], None))
    elif sweep is None or opts.follow == "every":
        chains += [((f.run_id if sweep is not None else campaign)[:BASE_MAX], [f], f) for f in follows]
    for base, before, target in chains:
        for stage in opts.then:
            rec = queue_stage(registry, profile, cfg, opts, stage, runs_root=runs_root, base=base, campaign=campaign,
                              campaign_dir=campaign_dir, chain=chain, after=before, target=target, source=source,
                              recorded=add)
            before = [rec]
    if profile.scheduler == "local":
        from hpc_finetune.campaigns.localchain import start_runner

        start_runner(campaign_dir, list(prepared) + list(follows) + queued, max_parallel=max_parallel)
    return queued


def write_campaign(campaign_dir: Path, profile: ClusterProfile, cfg: RunConfig, config: str, train: RunRecord,
                   chain: tuple[str, ...], jobs: list[RunRecord]) -> None:
    """CAMPAIGN/campaign.json of a chain, in the sweeps' campaign format (campaigns/store.py: kind "chain", the
    training run as its one member; the stage jobs in ``extra``)."""
    from hpc_finetune.campaigns.store import Campaign, CampaignMember

    Campaign(campaign_id=campaign_dir.name, name=cfg.name, kind="chain", campaign_dir=str(campaign_dir),
             cluster=profile.name, scheduler=profile.scheduler, created=now(), config=config, grid=[],
             max_parallel=None, array_job_id="", members=[CampaignMember(0, train.run_id, {})],
             extra={"chain": list(chain), "jobs": {r.run_id: r.kind for r in jobs}}).save()


def queue_chain(registry: Registry, profile: ClusterProfile, cfg: RunConfig, opts: StageOptions, *,
                source: str) -> tuple[Path, list[RunRecord]]:
    """`submit --prepare/--then`: a campaign CAMPAIGN (the run's name, made unique) holding [CAMPAIGN-prepare,]
    CAMPAIGN-train and its stages, queued in order, each after the one before. ``cfg`` as the user gave it (its
    output_dir, if any, is the user's). If a job cannot be queued, the ones already queued are cancelled and the
    error raised."""
    from hpc_finetune.jobspec import runs_root
    from hpc_finetune.records import claim_run_dir
    from hpc_finetune.runs import NewRun, create_run, prepare_at

    root = runs_root(profile)
    campaign_dir = claim_run_dir(registry, root, cfg.name[:BASE_MAX])
    campaign = campaign_dir.name
    chain = chain_of(opts.then, prepare=opts.prepare, select=False)
    local = profile.scheduler == "local"
    created: list[RunRecord] = []
    try:
        prepared = None
        if opts.prepare:
            prepared = queue_stage(registry, profile, cfg, opts, "prepare", runs_root=root, base=campaign,
                                   campaign=campaign, campaign_dir=campaign_dir, chain=chain, after=[], target=None,
                                   source=source, recorded=created.append)
        after = [prepared] if prepared else []
        dependency = "" if local else dependency_value("train", [r.job_id for r in after])

        def build(run_dir: Path) -> NewRun:
            prep = prepare_at(profile, cfg, run_dir, source=source, extra_sbatch=dependency_options(dependency))
            rec = prep.record()
            rec.campaign, rec.after, rec.dependency = campaign, [r.run_id for r in after], dependency
            if local:
                save_program(run_dir, prep.program)
            return NewRun(record=rec, script=prep.script, program=prep.program,
                          max_requeues=prep.profile.max_requeues, files=prep.files)

        train = create_run(registry, root, f"{campaign}-train", build, hold=local, recorded=created.append)
        write_campaign(campaign_dir, profile, cfg, source, train, chain, created)
        queue_stages(registry, profile, cfg, opts, campaign_dir, [train], source=source,
                     prepared=[prepared] if prepared else [], out=created)
        write_campaign(campaign_dir, profile, cfg, source, train, chain, created)
    except BaseException:
        if not created:  # nothing queued or recorded: leave nothing behind
            shutil.rmtree(campaign_dir, ignore_errors=True)
        roll_back(registry, created)
        raise
    return campaign_dir, created


def roll_back(registry: Registry, records: Sequence[RunRecord], *,
              array: Optional[tuple[str, str, Path]] = None, forget: bool = False) -> None:
    """Nothing half-queued (queue_chain, sweep_with_stages): cancel the jobs of ``records`` already queued and mark
    every record CANCELLED, saying why (they stay recorded, so `status` shows what happened). ``array``
    (scheduler, job id, folder): a sweep's job array, cancelled once by its id (its members' jobs are its tasks).
    ``forget``: also drop the records and their folders (their campaign itself was rolled back). A held local run
    has no job to cancel: the local runner that would start it is started last, once everything is queued, and
    it never starts a CANCELLED run that has no job."""
    from hpc_finetune.scheduler import get_scheduler

    def cancel(scheduler: str, job_id: str, where: Path) -> None:
        try:
            get_scheduler(scheduler).cancel(job_id, where)
        except (UserError, OSError):  # already gone; the record still says CANCELLED
            pass

    from hpc_finetune.campaigns.actions import cancel_order

    # in actions.cancel_order's order: the stages that wait on others (newest first), then the members (the array,
    # once, by its id), then the prepare jobs: a select job waits `afterany` on the array and would start once the
    # array is gone
    in_array = lambda rec: bool(array and array[1] and rec.job_id.startswith(f"{array[1]}_"))  # noqa: E731
    array_cancelled = False
    for rec in cancel_order(list(records)):
        if rec.kind == "train" and array and array[1]:
            if not array_cancelled:
                cancel(*array)
                array_cancelled = True
            if in_array(rec):
                continue
        if rec.segments:
            cancel(rec.scheduler, rec.job_id, Path(rec.run_dir))
    if array and array[1] and not array_cancelled:
        cancel(*array)
    for rec in records:
        if forget:
            registry.forget([rec.run_id])
            shutil.rmtree(rec.run_dir, ignore_errors=True)
            continue
        rec.state, rec.reason = CANCELLED, QUEUE_FAILED
        rec.save()
        registry.upsert(rec)


def member_config(rec: RunRecord) -> RunConfig:
    """A sweep member's whole config, as its job will read it (RUN_DIR/run.yaml)."""
    from hpc_finetune.runconfig import load_run_config

    return load_run_config(Path(rec.run_dir) / layout.RUN_YAML, [])


def prepare_names(campaign: str, n: int) -> list[str]:
    """The prepare jobs' run names: CAMPAIGN-prepare when the members share one tokenized cache, else
    CAMPAIGN-prepare-1, -2, ... (one per distinct cache, in the order of the first member using it)."""
    base = campaign[:BASE_MAX]
    return [f"{base}-prepare"] if n == 1 else [f"{base}-prepare-{i + 1}" for i in range(n)]


def describe_prepares(plan: "SweepPlan", opts: StageOptions) -> str:
    """What `sweep --dry-run` says about the stages: the chain, and with --prepare each prepare job (one per
    distinct tokenized cache among the members, cachekey.groups) with the tasks it tokenizes for."""
    chain = chain_of(opts.then, prepare=opts.prepare, select=opts.follow == "best" and bool(opts.then))
    lines = ["# stages: " + " -> ".join(chain)]
    if opts.prepare:
        groups = cachekey.groups(plan.configs)
        for name, group in zip(prepare_names(plan.campaign_id, len(groups)), groups):
            lines.append(f"#   {name}: tokenizes the data of task(s) "
                         + ",".join(str(plan.members[i].index) for i in group))
        lines.append("#   the array waits on " + ("it (afterok)" if len(groups) == 1 else
                                                   f"all {len(groups)} (afterok): the members' tokenized caches "
                                                   "differ (data, max_length, tokenizer, packing or split seed)"))
    return "\n".join(lines)


def sweep_with_stages(req, registry: Registry, opts: StageOptions) -> tuple[object, list[RunRecord], list[RunRecord]]:
    """`sweep ... --prepare/--then/--follow`: the sweeps' ``campaigns.sweep.submit_sweep`` with the stages around it.
    Its ``before_submit`` hook queues the prepare jobs, ONE per distinct tokenized cache among the members
    (cachekey.groups over their run.yaml: e.g. a grid over training.max_length needs one per length, one over the
    learning rate needs one), each tokenizing from a config equal to a member's, and makes the array wait on all
    of them (afterok:P1:P2; the members' records list them in ``after``); on the local profile the members stay
    held for the one runner ``queue_stages`` starts. Returns (campaign, members, stage jobs: prepares first).
    If a job cannot be queued, everything already queued is cancelled (roll_back) and the error raised."""
    from hpc_finetune.campaigns.sweep import submit_sweep
    from hpc_finetune.runs import RunRequest, load_request

    profile, cfg = load_request(RunRequest(config=req.config, sets=list(req.sets), cluster=req.cluster,
                                           nodes=getattr(req, "nodes", None), gpus=getattr(req, "gpus", None),
                                           time=getattr(req, "time", None),
                                           partition=getattr(req, "partition", None)))
    source = str(req.config)
    check_stages(profile, cfg, opts, source, sweep=True)
    local = profile.scheduler == "local"
    chain = chain_of(opts.then, prepare=opts.prepare, select=opts.follow == "best")
    preps: list[RunRecord] = []

    def before_submit(campaign_dir: Path, members: list[RunRecord]) -> list[tuple[str, Optional[str]]]:
        if not opts.prepare:
            return []
        configs = [member_config(rec) for rec in members]
        groups = cachekey.groups(configs)
        for name, group in zip(prepare_names(campaign_dir.name, len(groups)), groups):
            queue_stage(registry, profile, configs[group[0]], opts, "prepare", runs_root=campaign_dir.parent,
                        base=campaign_dir.name[:BASE_MAX], campaign=campaign_dir.name, campaign_dir=campaign_dir,
                        chain=chain, after=[], target=None, source=source, name=name, recorded=preps.append)
        dependency = "" if local else dependency_value("train", [p.job_id for p in preps])
        for rec in members:
            rec.after, rec.dependency = [p.run_id for p in preps], dependency
            rec.save()
        return dependency_options(dependency)

    try:
        campaign, members = submit_sweep(req, registry, before_submit=before_submit, start_local_runner=False)
    except BaseException:  # submit_sweep removed the campaign and its members: the prepare jobs go with them
        roll_back(registry, preps, forget=True)
        raise
    stages: list[RunRecord] = []
    try:
        queue_stages(registry, profile, cfg, opts, Path(campaign.campaign_dir), members, source=source,
                     sweep=campaign.array_job_id or "local", prepared=preps,
                     max_parallel=getattr(req, "max_parallel", None) or 0, out=stages)
    except BaseException:
        array = (profile.scheduler, campaign.array_job_id, Path(campaign.campaign_dir)) \
            if campaign.array_job_id else None
        roll_back(registry, [*preps, *members, *stages], array=array)
        raise
    return campaign, members, preps + stages


def print_chain(campaign_dir: Path, records: list[RunRecord]) -> None:
    first = records[0]
    held = not first.segments
    print(f"campaign {campaign_dir.name}: " + " -> ".join(r.kind for r in records) + f" on {first.cluster}")
    by_id = {r.run_id: r for r in records}
    rows = []
    for r in records:
        waits = ", ".join((by_id[a].job_id or a) for a in r.after if a in by_id)
        rows.append((r.kind, r.run_id, f"job {r.job_id}" if r.job_id else "held",
                     f"{r.dependency or ('after ' + waits if waits else '')}",
                     f"{r.nodes}x{r.gpus_per_node}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if held:
        print("  the local runner starts each job when the one before it has completed")
    train = next(r for r in records if r.kind == "train")
    print(f"  follow it:     hpc-finetune status {campaign_dir.name}   |   hpc-finetune logs -f {train.run_id}")
