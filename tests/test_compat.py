"""Jobs queued or requeued before the compute-side modules moved to hpc_finetune/job/ keep working.

Their pickled node program names ``hpc_finetune.launch.NodeProgram`` and their job.sh runs
``python -m hpc_finetune.segments RUN_DIR OUT STATUS RETRIES MAXREQ`` after a failed srun: both old paths are thin
compatibility packages now. compat/nodeprogram_before_job_move.pkl is the pickle submitit wrote (DelayedSubmission.dump)
for a NodeProgram of the version before the move (made with that checkout's code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hpc_finetune.job.launch import NodeInfo, NodeProgram

OLD_PICKLE = Path(__file__).parent / "compat" / "nodeprogram_before_job_move.pkl"


def test_a_node_program_pickled_under_the_old_module_path_loads_and_runs_its_launch():
    from submitit.core.utils import DelayedSubmission

    assert b"hpc_finetune.launch\x94\x8c\x0bNodeProgram" in OLD_PICKLE.read_bytes()  # really the old path
    program = DelayedSubmission.load(OLD_PICKLE).function
    assert type(program) is NodeProgram
    info = NodeInfo(node_rank=1, num_nodes=2, hostname="n2", main_host="n1", main_addr="10.0.0.1", port=21234,
                    job_id="77")
    argv = program.command(info)
    assert argv[:3] == ["/venv/bin/python", "-m", "torch.distributed.run"]
    assert "--node-rank=1" in argv and argv[-1] == "/shared/runs/old/run.yaml"
    plan = program.launch_plan()
    assert plan.env["HPCFT_DEEPSPEED_CONFIG"] == "/shared/runs/old/deepspeed_config.json"


def test_old_import_paths_are_the_moved_modules():
    import hpc_finetune.checkpoints
    import hpc_finetune.job.checkpoints
    import hpc_finetune.job.launch
    import hpc_finetune.job.segments
    import hpc_finetune.launch
    from hpc_finetune.segments import current_step, log_event

    assert hpc_finetune.launch is hpc_finetune.job.launch
    assert hpc_finetune.checkpoints is hpc_finetune.job.checkpoints
    assert log_event is hpc_finetune.job.segments.log_event
    assert current_step is hpc_finetune.job.segments.current_step


def test_an_old_job_scripts_after_failure_command_still_runs(tmp_path):
    """The line job.sh files rendered before the move run when srun fails (see git history of the golden files)."""
    out = tmp_path / "output"
    proc = subprocess.run([sys.executable, "-m", "hpc_finetune.segments", str(tmp_path), str(out), "3", "0", "5"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (tmp_path / "attempts.jsonl").read_text().splitlines()]
    assert [(e["event"], e["status"]) for e in events] == [("gave up", 3)]
    assert "retry_on_failure: 0" in proc.stdout


def test_an_eval_job_pickled_by_this_release_still_loads_and_runs_the_same_command():
    """`eval --submit` pickles an EvalProgram into the queue (compat/evalprogram_v1.pkl, written by this release):
    a change of its fields or module must keep jobs queued before it loading."""
    from submitit.core.utils import DelayedSubmission

    from hpc_finetune.evaljob import EvalProgram

    program = DelayedSubmission.load(Path(__file__).parent / "compat" / "evalprogram_v1.pkl").function
    assert type(program) is EvalProgram
    assert program.command() == ["/venv/bin/python", "-u", "-m", "hpc_finetune.train.evaluate",
                                 "/shared/runs/old-eval/run.yaml", "--model", "/shared/runs/old/output/final",
                                 "--out", "/shared/runs/old/eval"]


STAGE_PICKLE = Path(__file__).parent / "compat" / "stageprogram_v1.pkl"
SELECT_PICKLE = Path(__file__).parent / "compat" / "stageprogram_select_v1.pkl"


def test_a_stage_program_pickled_before_the_move_to_job_loads_and_builds_its_command_now(tmp_path):
    """compat/stageprogram_v1.pkl and stageprogram_select_v1.pkl: what submitit wrote (DelayedSubmission.dump) into a
    stage job's jobs/ with the release before stagejob.py and campaigns/select.py moved into job/ (that checkout's
    code): a merge stage following the selected member and a select stage of campaign /shared/runs/sw. Both name
    ``hpc_finetune.stagejob.StageProgram``; the command is built when the job runs, from today's stage registry."""
    from submitit.core.utils import DelayedSubmission

    from hpc_finetune.job.stagejob import SELECTION, StageProgram

    for path in (STAGE_PICKLE, SELECT_PICKLE):
        assert b"hpc_finetune.stagejob\x94\x8c\x0cStageProgram" in path.read_bytes()  # really the old path
    select = DelayedSubmission.load(SELECT_PICKLE).function
    assert type(select) is StageProgram
    assert select.command() == ["/venv/bin/python", "-u", "-m", "hpc_finetune.job.select", "/shared/runs/sw"]
    merge = DelayedSubmission.load(STAGE_PICKLE).function
    assert type(merge) is StageProgram and merge.selected and merge.campaign_dir == "/shared/runs/sw"
    merge.campaign_dir = str(tmp_path)  # the pickled campaign folder, moved somewhere this test can write
    (tmp_path / SELECTION).write_text(json.dumps({"run_id": "sw-b", "run_dir": "/shared/runs/sw-b",
                                                  "output_dir": "/shared/runs/sw-b/output"}))
    assert merge.command() == ["/venv/bin/python", "-u", "-m", "hpc_finetune", "merge",
                               "/shared/runs/sw-b/output/final", "--out", "/shared/runs/sw-b/output/merged"]


def test_old_stage_import_paths_are_the_moved_modules():
    import hpc_finetune.campaigns.select
    import hpc_finetune.job.select
    import hpc_finetune.job.stagejob
    import hpc_finetune.stagejob
    from hpc_finetune.stagejob import SELECTION, StageProgram

    assert hpc_finetune.stagejob is hpc_finetune.job.stagejob
    assert StageProgram is hpc_finetune.job.stagejob.StageProgram and SELECTION == "selection.json"
    assert hpc_finetune.campaigns.select.main is hpc_finetune.job.select.main


def test_the_old_select_command_still_runs(tmp_path):
    """``python -m hpc_finetune.campaigns.select CAMPAIGN_DIR``, as the release before the move built it."""
    run_dir = tmp_path / "sw-a"
    (run_dir / "output" / "final").mkdir(parents=True)
    (run_dir / "output" / "summary.json").write_text(json.dumps({"final_loss": 1.25}))
    cdir = tmp_path / "sw"
    cdir.mkdir()
    (cdir / "campaign.json").write_text(json.dumps({"members": [{"index": 0, "run_id": "sw-a"}]}))
    proc = subprocess.run([sys.executable, "-m", "hpc_finetune.campaigns.select", str(cdir)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((cdir / "selection.json").read_text())["run_id"] == "sw-a"
