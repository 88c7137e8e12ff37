"""The requeue policy's pure parts (segments.py), without Slurm: the real-cluster behaviour is in test_requeue.py."""

from __future__ import annotations

import json

from hpc_finetune import segments


def test_current_step_reads_the_last_whole_line_of_steps_log(tmp_path):
    assert segments.current_step(tmp_path) == 0  # nothing written yet
    (tmp_path / "progress.json").write_text(json.dumps({"step": 5}))
    assert segments.current_step(tmp_path) == 5  # no steps.log: the snapshot
    log = tmp_path / "steps.log"
    log.write_text("".join(f"{i}\n" for i in range(1, 1235)))
    assert segments.current_step(tmp_path) == 1234  # the log, not the older snapshot
    with log.open("a") as f:
        f.write("12")  # the job was killed in the middle of writing step 1235
    assert segments.current_step(tmp_path) == 1234
    log.write_text("1")
    assert segments.current_step(tmp_path) == 5  # not even one whole line: back to the snapshot


def test_signal_reason_tells_the_time_limit_from_a_preemption():
    # 2-hour limit, warning 300 s before it: Slurm may send it up to a minute early (and checks every 30 s)
    assert segments.signal_reason(7200 - 300, 7200, 300) == "time limit"
    assert segments.signal_reason(7200 - 380, 7200, 300) == "time limit"
    assert segments.signal_reason(3600, 7200, 300) == "preempted"


def test_requeue_allowed_counts_this_jobs_own_requeues():
    events = [{"event": "requeued", "job_id": "7"}, {"event": "requeued", "job_id": "7"},
              {"event": "requeued", "job_id": "3"}]
    assert segments.requeue_allowed(events, "7", 3) is None
    why = segments.requeue_allowed(events, "7", 2)
    assert "max_requeues is 2" in why and "hpc-finetune requeue RUN" in why
    assert segments.requeue_allowed(events, "9", 1) is None  # a manual requeue is a new job with a new count


def test_retry_decision_never_retries_the_same_failure_twice():
    assert segments.retry_decision([], 1, 10, 0)[0] is False  # the profile does not retry
    retry, why = segments.retry_decision([], 1, 10, 3)
    assert retry and "retry 1 of 3" in why
    first = [{"event": "retrying", "status": 1, "step": 10}]
    retry, why = segments.retry_decision(first, 1, 10, 3)
    assert not retry and "twice in a row the same way" in why
    assert segments.retry_decision(first, 1, 40, 3)[0] is True  # it got further: bad luck, not a bug
    assert segments.retry_decision(first, 137, 10, 3)[0] is True  # a different failure
    spent = [{"event": "retrying", "status": 1, "step": s} for s in (10, 20, 30)]
    retry, why = segments.retry_decision(spent, 1, 40, 3)
    assert not retry and "after 3 automatic retries" in why


# Slurm's record of a job as `scontrol show job -o` printed it on the dev cluster (Slurm 22.05), trimmed
PREEMPTING = {"JobState": "RUNNING", "Restarts": "0", "EndTime": "2026-11-26T14:04:58",
              "PreemptTime": "2026-11-26T14:04:28"}
CANCELLING = {"JobState": "COMPLETING", "Restarts": "0", "EndTime": "2026-11-26T14:05:46", "PreemptTime": "None"}
RUNNING = {"JobState": "RUNNING", "Restarts": "1", "EndTime": "2026-11-26T14:16:17", "PreemptTime": "None"}


def test_a_sigterm_is_a_preemption_only_when_slurm_says_so():
    assert segments.term_cause(PREEMPTING) == "preempted"
    assert segments.term_cause({**PREEMPTING, "JobState": "SIGNALING"}) == "preempted"
    assert segments.term_cause(CANCELLING) == "ended"  # scancel, the time limit's kill, a requeue by hand
    assert segments.term_cause({**CANCELLING, "JobState": "TIMEOUT"}) == "ended"
    assert segments.term_cause(RUNNING) == "not Slurm"  # a node's shutdown, or a kill by hand
    assert segments.term_cause({}) == "unknown"  # Slurm did not answer: never a reason to requeue


def test_save_deadline_is_bounded_by_the_time_left():
    end = segments.slurm_time(PREEMPTING["EndTime"])
    assert end - segments.slurm_time(PREEMPTING["PreemptTime"]) == 30  # the GraceTime
    margin = segments.requeue_margin(300)
    assert 0 < margin <= 10 and segments.requeue_margin(30) < 30 / 3
    # a time-limit warning, 300 s ahead, with no word from Slurm: the promised 300 s, less the margin
    assert segments.save_deadline(1000.0, 300, None) == 1300 - margin
    # a preemption's SIGTERM: the end of the grace time (EndTime) comes first, however long the warning would be
    signal_at = segments.slurm_time(PREEMPTING["PreemptTime"])
    assert segments.save_deadline(signal_at, 300, end) == end - margin
    # a warning sent early (Slurm checks limits every 30 s): the job's EndTime, when Slurm kills it, is the bound
    assert segments.save_deadline(1000.0, 300, 1000.0 + 360) == 1360 - margin
    assert segments.slurm_time("None") is None and segments.slurm_time("Unknown") is None


def test_a_segment_that_ended_on_purpose_is_not_a_failure(tmp_path, monkeypatch):
    """The batch script calls after_failure whenever srun failed; a segment whose node program requeued it (or
    recorded a SIGTERM that must not requeue) is not retried on top of that: one requeue, not two."""
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: a retry here would fail loudly
    for ended in ("requeued", "terminated", "stopped"):
        run = tmp_path / ended
        run.mkdir()
        segments.log_event(run, "start", step=0)
        segments.log_event(run, ended, step=7)
        assert segments.after_failure(str(run), str(run / "output"), 255, 3) is False
        assert [e["event"] for e in segments.read_events(run)] == ["start", ended]
    # the same events from an earlier segment (restart 1) do not excuse a failure of this one
    run = tmp_path / "earlier"
    run.mkdir()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    segments.log_event(run, "requeued", step=7)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert segments.after_failure(str(run), str(run / "output"), 1, 0) is False
    assert segments.read_events(run)[-1]["event"] == "gave up"


def _program(tmp_path, child: list[str], signal_seconds: int):
    """A node program whose launcher is ``child``, signalled now (the state _on_signal leaves)."""
    import signal
    import subprocess
    import sys
    import time

    from hpc_finetune.launch import NodeProgram, node_info

    program = NodeProgram(run_dir=str(tmp_path), nodes=1, processes_per_node=1, gpus_per_node=0,
                          output_dir=str(tmp_path / "output"), signal_seconds=signal_seconds)
    program._info, program._started = node_info({}), time.time()
    program._proc = subprocess.Popen([sys.executable, "-c", *child])
    time.sleep(0.5)  # the child's own handler is in place
    program._signalled = (signal.SIGUSR2, time.time())
    program._signal_dir = str(tmp_path)
    return program


def test_checkpoint_hook_requeues_when_the_save_outlasts_the_time_left(tmp_path, monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    stuck = "import signal, time\nsignal.signal(signal.SIGUSR2, signal.SIG_IGN)\ntime.sleep(120)"
    program = _program(tmp_path, [stuck], signal_seconds=4)
    try:
        again = program.checkpoint()
        assert program._proc.poll() is None  # still "saving": the hook did not wait for it
        assert again is not None and again.function is program  # requeued anyway
        last = segments.read_events(tmp_path)[-1]
        assert last["event"] == "requeued" and "the save did not finish in the time left" in last["reason"]
    finally:
        program._proc.kill()
        program._proc.wait()


def test_checkpoint_hook_waits_for_a_save_that_fits(tmp_path, monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    saving = "import time\ntime.sleep(1)"  # a save that ends well inside the 60 s left
    program = _program(tmp_path, [saving], signal_seconds=60)
    assert program.checkpoint() is not None
    assert program._proc.poll() is not None  # it ended, and the hook saw it end
    last = segments.read_events(tmp_path)[-1]
    assert last["event"] == "requeued" and "did not finish" not in last["reason"]
