"""`sweep`: a grid of runs as ONE Slurm job array, each array task a normal run (its own run directory, run.yaml
with its own values, checkpoints, wandb run id and requeue history), recorded together as one campaign.

plan_sweep checks every member's whole config before anything exists (one line naming the member and the key);
submit_sweep claims the campaign folder and the members' run directories, writes them, pickles each member's
program, submits the array and records it, or removes everything it created.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from hpc_finetune.campaigns import grid, members as members_mod
from hpc_finetune.campaigns.arrayscript import ArrayMember, array_script
from hpc_finetune.campaigns.store import Campaign, CampaignMember
from hpc_finetune.errors import UserError
from hpc_finetune.jobspec import JobSpec, resolve, runs_root
from hpc_finetune.profile import ClusterProfile
from hpc_finetune.records import Registry, RunRecord, Segment, claim_run_dir, next_run_id, now
from hpc_finetune.files import write_atomic
from hpc_finetune.runconfig import RUN_NAME, RunConfig

ARRAY_SCRIPT = "array.sh"


@dataclass
class SweepRequest:
    config: Path
    sets: list[str]
    grid: list[str]
    cluster: Optional[str] = None  # default: $HPC_FINETUNE_CLUSTER, else local
    nodes: Optional[int] = None
    gpus: Optional[int] = None
    time: Optional[str] = None
    partition: Optional[str] = None
    seeds: Optional[int] = None
    max_parallel: Optional[int] = None
    name: Optional[str] = None
    check: bool = True

    @property
    def flags(self) -> dict[str, tuple[str, Any]]:
        """config key -> (flag, value) of --nodes/--gpus/--time/--partition, as `submit` applies them."""
        from hpc_finetune.runs import FLAGS

        return {key: (f"--{flag}", getattr(self, flag)) for flag, key in FLAGS.items()}


def load_base(req: SweepRequest) -> tuple[ClusterProfile, RunConfig]:
    """The profile and the config before any member's values (the campaign's name and base seed come from it)."""
    import os

    from hpc_finetune.profile import find_profile
    from hpc_finetune.runconfig import load_run_config

    cfg = load_run_config(req.config, list(req.sets), flags=req.flags)
    return find_profile(req.cluster or os.environ.get("HPC_FINETUNE_CLUSTER") or "local"), cfg


def prepare_member(profile: ClusterProfile, cfg: RunConfig, run_dir: Path, source: str) -> tuple[Any, dict[str, str]]:
    """A member prepared like any run for its directory: (prepared run with .spec/.script/.program, its files:
    run.yaml, profile.yaml, its own job.sh for a later `requeue MEMBER` as a plain job, launch configs)."""
    from hpc_finetune.runs import prepare_at

    prep = prepare_at(profile, cfg, run_dir, source=source)
    return prep, prep.files


@dataclass
class SweepPlan:
    profile: ClusterProfile
    base: RunConfig
    campaign_id: str
    campaign_dir: Path
    members: list[members_mod.Member]
    configs: list[RunConfig]
    spec: JobSpec  # member 0's (they share one resource request)
    script: str = ""
    notes: list[str] = field(default_factory=list)
    max_parallel: Optional[int] = None


def _load_member(req: SweepRequest, member: members_mod.Member) -> RunConfig:
    """The member's whole config: the file, --set, the member's grid values (parsed like --set values; an error
    names `--grid KEY`), then --nodes/--gpus/--time/--partition."""
    from hpc_finetune.runconfig import load_run_config
    from hpc_finetune.schema import parse_yaml_text

    values = {key: (grid.SOURCE, parse_yaml_text(raw, f"{grid.SOURCE} {key}") if raw.strip() else "")
              for key, raw in member.values.items()}
    return load_run_config(req.config, list(req.sets), flags={**values, **req.flags})


def plan_sweep(req: SweepRequest, registry: Registry, campaign_dir: Optional[Path] = None) -> SweepPlan:
    """Every member checked; ``campaign_dir`` None: the ids a sweep would take now (nothing is created)."""
    profile, base = load_base(req)
    if req.max_parallel is not None and req.max_parallel < 1:
        raise UserError(f"must be at least 1, got {req.max_parallel}", source="--max-parallel")
    axes = grid.parse_grid(req.grid, req.seeds, base_seed=base.training.seed)
    name = req.name or base.name
    if not RUN_NAME.match(name):
        raise UserError(f"{name!r} is not a valid campaign name: 1-64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit", source="--name")
    root = runs_root(profile)
    if campaign_dir is None:
        campaign_dir = root / next_run_id(registry, root, name)
    campaign_id = campaign_dir.name
    members = members_mod.make_members(campaign_id, grid.expand(axes))
    for m in members:  # ids a dry run shows: the first free ones (claim_run_dir takes them for real)
        m.run_id = next_run_id(registry, root, m.run_id)
    needs_full_check = any(a.key.split(".")[0] in ("data", "model") for a in axes)

    def check(m: members_mod.Member) -> RunConfig:
        cfg = _load_member(req, m)
        run_dir = root / m.run_id
        if req.check and (m.index == 0 or needs_full_check):
            from hpc_finetune.check import raise_problems

            _, notes = raise_problems(cfg, profile, root / "check", config_source=str(req.config))
            if m.index == 0:
                plan_notes.extend(n for n in notes if n.startswith("data:"))
        else:
            resolve(profile, cfg, run_dir, source=str(req.config))
        return cfg

    plan_notes: list[str] = []
    configs = members_mod.check_members(members, check)
    spec = resolve(profile, configs[0], root / members[0].run_id, source=str(req.config))
    plan = SweepPlan(profile, base, campaign_id, campaign_dir, members, configs, spec, notes=plan_notes,
                     max_parallel=req.max_parallel)
    plan.script = array_script(profile, spec, campaign_id, campaign_dir,
                               [ArrayMember(m.index, str(root / m.run_id), str(_output_dir(cfg, root / m.run_id)))
                                for m, cfg in zip(members, configs)], req.max_parallel)
    return plan


def _output_dir(cfg: RunConfig, run_dir: Path) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else run_dir / "output"


def member_table(plan: SweepPlan) -> str:
    keys = list(plan.members[0].values) if plan.members else []
    head = ["TASK", "RUN", *keys]
    rows = [head] + [[str(m.index), m.run_id, *(m.values[k] for k in keys)] for m in plan.members]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def dry_run_note(plan: SweepPlan) -> str:
    """What a dry run says beside the script: the campaign and its member table."""
    return (f"# campaign {plan.campaign_id}: {len(plan.members)} member(s) as one job array on {plan.profile.name}"
            + (f", at most {plan.max_parallel} at once" if plan.max_parallel else "") + "\n" + member_table(plan))


BeforeSubmit = Callable[[Path, list[RunRecord]], Sequence[tuple[str, Optional[str]]]]


def submit_sweep(req: SweepRequest, registry: Registry, *, before_submit: Optional[BeforeSubmit] = None,
                 start_local_runner: bool = True) -> tuple[Campaign, list[RunRecord]]:
    """Check every member, then claim, write, submit, record; nothing left behind on failure.

    Hooks for chained stages (campaigns/chain.py): ``before_submit(campaign_dir, member_records)`` runs once the
    campaign folder and the members' records exist and before the array is queued; it returns more #SBATCH options
    for the array (e.g. ``("dependency", "afterok:PREPARE")`` after queuing a prepare job in the campaign).
    ``start_local_runner=False``: on the local profile leave the members held (no runner of our own): the stages'
    queue_stages starts the one runner that owns the members and their stages."""
    from hpc_finetune.runs import _TERM, _terminate_as_exception
    from hpc_finetune.scheduler import get_scheduler

    plan = plan_sweep(req, registry)  # every member checked before anything is created
    profile, base = plan.profile, plan.base
    runner = _local_runner() if profile.scheduler == "local" else None
    if profile.scheduler != "slurm" and runner is None:
        raise UserError(f"cluster {profile.name!r} has no Slurm and this installation has no local runner: a sweep "
                        "is a Slurm job array", source="sweep")
    root = runs_root(profile)
    created: list[Path] = []
    with _terminate_as_exception():
        _TERM["deferred"] = True
        campaign_dir = claim_run_dir(registry, root, req.name or base.name)
        created.append(campaign_dir)
        try:
            _TERM["deferred"] = False
            if _TERM.pop("pending", None):
                raise SystemExit(143)
            campaign_id = campaign_dir.name
            members = members_mod.make_members(campaign_id, grid.expand(
                grid.parse_grid(req.grid, req.seeds, base_seed=base.training.seed)))
            records, programs, array_members = [], [], []
            spec0 = None
            for m in members:
                run_dir = claim_run_dir(registry, root, m.run_id)
                created.append(run_dir)
                m.run_id = run_dir.name
                cfg = _load_member(req, m)
                if RUN_NAME.match(m.run_id):
                    cfg.name = m.run_id  # the member's own name (wandb run name, summary)
                prep, files = prepare_member(profile, cfg, run_dir, str(req.config))
                spec0 = spec0 or prep.spec
                for fname, text in files.items():
                    write_atomic(run_dir / fname, text)
                (run_dir / "jobs").mkdir(exist_ok=True)
                spec = prep.spec
                rec = RunRecord(run_id=m.run_id, name=cfg.name, cluster=profile.name, scheduler=profile.scheduler,
                                run_dir=str(run_dir), output_dir=str(spec.output_dir), created=now(),
                                nodes=spec.nodes, gpus_per_node=spec.gpus_per_node,
                                processes_per_node=spec.processes_per_node, time_seconds=spec.time_seconds,
                                campaign=campaign_id, member=m.index)
                rec.save()
                records.append(rec)
                programs.append((run_dir, prep.program))
                array_members.append(ArrayMember(m.index, str(run_dir), str(spec.output_dir)))
            assert spec0 is not None
            extra = list(before_submit(campaign_dir, records)) if before_submit else []
            script = array_script(profile, spec0, campaign_id, campaign_dir, array_members, req.max_parallel, extra)
            write_atomic(campaign_dir / ARRAY_SCRIPT, script)
            (campaign_dir / "jobs").mkdir(exist_ok=True)
            campaign = Campaign(campaign_id=campaign_id, name=req.name or base.name, kind="sweep",
                                campaign_dir=str(campaign_dir), cluster=profile.name, scheduler=profile.scheduler,
                                created=now(), config=str(req.config), grid=list(req.grid),
                                max_parallel=req.max_parallel,
                                members=[CampaignMember(m.index, m.run_id, m.values) for m in members])
            if req.seeds:
                campaign.grid.append(f"{grid.SEED_KEY}=" + ",".join(members_seed_values(members)))
            campaign.save()
            if runner is not None:  # this machine: the members are held runs the local runner starts, K at once
                save_program, start_runner = runner
                for run_dir, program in programs:
                    save_program(run_dir, program)
                for rec in records:
                    registry.upsert(rec)
                _TERM["deferred"] = True
                if start_local_runner:
                    campaign.extra["runner_pid"] = start_runner(campaign_dir, records,
                                                                max_parallel=req.max_parallel or 0)
                    campaign.save()
                return campaign, records
            _TERM["deferred"] = True  # the scheduler may accept the array, which must then be recorded whole
            array_id = get_scheduler(profile.scheduler).submit_array(
                campaign_dir / ARRAY_SCRIPT, programs, time_seconds=spec0.time_seconds,
                max_requeues=profile.max_requeues)
        except BaseException:
            registry.forget([rec.run_id for rec in records])  # a local campaign's held runs, if recorded yet
            for path in reversed(created):
                shutil.rmtree(path, ignore_errors=True)
            raise
        campaign.array_job_id = array_id
        campaign.save()
        submitted = now()
        for rec in records:
            rec.segments.append(Segment(job_id=f"{array_id}_{rec.member}", started_by="submit", submitted=submitted))
            rec.save()
            registry.upsert(rec)
    return campaign, records


def _local_runner():
    """(save_program, start_runner) of the local runner that owns a local campaign's jobs (campaigns/chain.py and
    campaigns/localchain.py, the stages' side of issue 12); None where they are not installed."""
    try:
        from hpc_finetune.campaigns.chain import save_program
        from hpc_finetune.campaigns.localchain import start_runner
    except ImportError:
        return None
    return save_program, start_runner


def members_seed_values(members: list[members_mod.Member]) -> list[str]:
    return list(dict.fromkeys(m.values.get(grid.SEED_KEY, "") for m in members))


def sweep_request(args: Any, *, check: bool) -> SweepRequest:
    """The request from `sweep`'s (or `render --grid`'s) parsed arguments."""
    return SweepRequest(config=args.config, sets=list(args.set), grid=list(args.grid), cluster=args.cluster,
                        nodes=args.nodes, gpus=args.gpus, time=args.time, partition=args.partition,
                        seeds=args.seeds, max_parallel=args.max_parallel, name=args.name, check=check)
