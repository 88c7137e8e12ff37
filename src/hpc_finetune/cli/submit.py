"""``hpc-finetune submit RUN.yaml``: render, check, write the run directory, submit, record."""

from __future__ import annotations

import argparse
import sys

from hpc_finetune.cli.args import add_run_arguments, add_stage_arguments, run_request


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the job script and what would be written; submit "
                                                          "nothing")
    p.add_argument("--wait", action="store_true", help="wait until the run ends, then show its status")
    p.add_argument("--no-check", action="store_true", help="skip the pre-flight `check`")
    add_stage_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hpc_finetune.records import Registry
    from hpc_finetune.runs import prepare_run, submit_run

    from hpc_finetune.campaigns.chain import check_stages, options_from_args

    registry = Registry()
    stages = options_from_args(args)
    # every problem at once, before a run id or directory exists; the spec checked is the spec submitted
    prep = prepare_run(run_request(args), check=not args.no_check, registry=registry)
    if stages is not None:  # every stage job resolved against the profile before anything is queued
        check_stages(prep.profile, prep.cfg, stages, prep.source)
    for note in prep.notes:  # how much of the data was read (a dry run's stdout stays the job script alone)
        if note.startswith("data:"):
            print(note, file=sys.stderr if args.dry_run else sys.stdout)
    if args.dry_run:
        sys.stdout.write(prep.script)
        print(f"# dry run: would create {prep.spec.run_dir} with "
              + ", ".join(prep.files), file=sys.stderr)
        if stages is not None:
            from hpc_finetune.campaigns.stages import chain_of

            print("# dry run: would queue the chain " + " -> ".join(chain_of(stages.then, prepare=stages.prepare,
                                                                               select=False))
                  + " (each stage a job of its own, after the one before)", file=sys.stderr)
        return 0
    if stages is not None:
        from hpc_finetune.campaigns.chain import print_chain, queue_chain
        from hpc_finetune.runs import load_request

        profile, cfg = load_request(run_request(args))  # as given: the chain's runs get directories of their own
        campaign_dir, records = queue_chain(registry, profile, cfg, stages, source=prep.source)
        print_chain(campaign_dir, records)
        if args.wait:
            from hpc_finetune.cli.views import wait_chain_and_print

            return wait_chain_and_print(registry, records)
        return 0
    rec = submit_run(prep, registry=registry)
    print(f"submitted run {rec.run_id} as job {rec.job_id} on {rec.cluster} "
          f"({rec.nodes} node(s) x {rec.gpus_per_node} GPU(s), limit {prep.spec.time})")
    print(f"  run directory: {rec.run_dir}")
    print(f"  follow it:     hpc-finetune status {rec.run_id}   |   hpc-finetune logs -f {rec.run_id}")
    if args.wait:
        from hpc_finetune.cli.views import wait_and_print

        return wait_and_print(registry, rec)
    return 0
