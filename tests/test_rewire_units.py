"""Units of the campaign re-wiring (no Slurm): what a stage waits on after a sweep's requeue, the requeued array's
script without its wait on the prepare job, and the order `cancel CAMPAIGN` takes a campaign's jobs in."""

from __future__ import annotations

from hpc_finetune.campaigns.actions import cancel_order
from hpc_finetune.campaigns.arrayscript import without_wait
from hpc_finetune.campaigns.rewire import stage_dependency
from hpc_finetune.records import RunRecord


def rec(run_id: str, kind: str, created: str, after: list[str], member=None) -> RunRecord:
    return RunRecord(run_id=run_id, name=run_id, cluster="c", scheduler="slurm", run_dir=f"/x/{run_id}",
                     output_dir=f"/x/{run_id}/output", created=created, nodes=1, gpus_per_node=0,
                     processes_per_node=1, time_seconds=60, campaign="sw", member=member, kind=kind, after=after)


def test_a_select_waits_on_whole_arrays_and_a_members_own_stage_on_its_task():
    # select after a requeue: a member still running in the first array, the requeued ones in the new array
    assert stage_dependency("select", ["7_0", "9_1", "9_3"]) == "afterany:7:9"
    assert stage_dependency("select", ["9_1"]) == "afterany:9"
    assert stage_dependency("select", ["12"]) == "afterany:12"  # a member requeued alone: a job of its own
    # --follow every: a member's merge waits on that member's new task, afterok
    assert stage_dependency("merge", ["9_3"]) == "afterok:9_3"
    assert stage_dependency("eval", ["14"]) == "afterok:14"
    assert stage_dependency("select", []) == ""


SCRIPT = """#!/bin/bash
#SBATCH --job-name=sw
#SBATCH --array=0-1%2
#SBATCH --time=00:10:00
#SBATCH --dependency=afterok:5
#SBATCH --kill-on-invalid-dep=yes
# --dependency in a comment stays
echo "#SBATCH --dependency=afterok:5"
"""


def test_the_requeued_array_script_waits_on_no_prepare_job():
    out = without_wait(SCRIPT)
    assert out == SCRIPT.replace("#SBATCH --dependency=afterok:5\n#SBATCH --kill-on-invalid-dep=yes\n", "")
    assert without_wait(out) == out


def test_cancel_takes_the_chain_tail_first_then_the_members_then_prepare():
    prep = rec("sw-prepare", "prepare", "t1", [])
    m0 = rec("sw-0", "train", "t2", ["sw-prepare"], member=0)
    m1 = rec("sw-1", "train", "t3", ["sw-prepare"], member=1)
    sel = rec("sw-select", "select", "t4", ["sw-0", "sw-1"])
    merge = rec("sw-merge", "merge", "t5", ["sw-select"])
    evl = rec("sw-eval", "eval", "t6", ["sw-merge"])
    order = [r.run_id for r in cancel_order([m1, prep, evl, m0, sel, merge])]
    assert order == ["sw-eval", "sw-merge", "sw-select", "sw-0", "sw-1", "sw-prepare"]
