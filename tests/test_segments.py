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
