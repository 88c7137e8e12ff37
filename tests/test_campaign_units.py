"""Campaigns' pure parts, without Slurm: grid expansion and refusal, member naming, the sacct array-row mapping (on
sacct output captured on the dev cluster, tests/data/sacct/), and the ranking metric."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpc_finetune.campaigns import arrays, grid, members, ranking
from hpc_finetune.errors import UserError

DATA = Path(__file__).resolve().parent / "data" / "sacct"


# --- grid

def test_grid_is_the_product_of_the_axes_last_key_fastest_then_seeds():
    axes = grid.parse_grid(["training.learning_rate=1e-4,2e-4", "lora.r=8,16"], seeds=2, base_seed=42)
    settings = grid.expand(axes)
    assert len(settings) == 8
    assert settings[0] == {"training.learning_rate": "1e-4", "lora.r": "8", "training.seed": "42"}
    assert settings[1] == {"training.learning_rate": "1e-4", "lora.r": "8", "training.seed": "43"}
    assert settings[2]["lora.r"] == "16" and settings[4]["training.learning_rate"] == "2e-4"
    assert len({tuple(s.items()) for s in settings}) == 8


def test_grid_values_keep_commas_inside_brackets():
    (axis,) = grid.parse_grid(["lora.target_modules=[q_proj,v_proj],all-linear"])
    assert axis.values == ("[q_proj,v_proj]", "all-linear")


@pytest.mark.parametrize("item, needle", [
    ("resources.nodes=1,2", "share one resource request"),
    ("launch.strategy=ddp,fsdp", "launch.* cannot vary"),
    ("name=a,b", "its own name"),
    ("output_dir=/a,/b", "its own output_dir"),
    ("training.learning_rate", "expected KEY=V1,V2"),
    ("training.learning_rate=1e-4,,2e-4", "empty value"),
    ("training.learning_rate=1e-4,1e-4", "given twice"),
    ("bad key=1", "malformed key"),
])
def test_bad_grid_items_are_one_line(item, needle):
    with pytest.raises(UserError) as err:
        grid.parse_grid([item])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_grid_refuses_repeats_seed_conflicts_and_too_many_members():
    with pytest.raises(UserError, match="given twice"):
        grid.parse_grid(["lora.r=8", "lora.r=16"])
    with pytest.raises(UserError, match="both a --grid key and set by --seeds"):
        grid.parse_grid(["training.seed=1,2"], seeds=2)
    with pytest.raises(UserError, match="at least one --grid"):
        grid.parse_grid([])
    with pytest.raises(UserError, match="at least 1"):
        grid.parse_grid([], seeds=0)
    many = ",".join(str(i) for i in range(40))
    with pytest.raises(UserError, match="1,600 members"):
        grid.parse_grid([f"lora.r={many}", f"lora.alpha={many}"])


# --- members

def test_member_ids_carry_the_values_and_fall_back_to_indices():
    settings = grid.expand(grid.parse_grid(["training.learning_rate=1e-4,2e-4", "lora.r=8,16"]))
    ids = members.member_ids("lrsweep", settings)
    assert ids[0] == "lrsweep-learning_rate1e-4-r8" and ids[3] == "lrsweep-learning_rate2e-4-r16"
    # values that would collide once made safe for a directory name: indices instead
    ids = members.member_ids("c", [{"data.train_file": "/a/b"}, {"data.train_file": "/a_b"}])
    assert ids == ["c-m0", "c-m1"]
    long = [{"training.learning_rate": "0." + "1" * 80}]
    assert members.member_ids("c", long) == ["c-m0"]


def test_check_members_names_the_first_bad_member_and_its_key():
    ms = members.make_members("c", [{"training.learning_rate": "1e-4"}, {"training.learning_rate": "abc"}])

    def check(m):
        if m.values["training.learning_rate"] == "abc":
            raise UserError("expected a number, got 'abc'", source="--grid",
                            field="training.learning_rate")
        return m.run_id

    with pytest.raises(UserError) as err:
        members.check_members(ms, check)
    text = str(err.value)
    assert text.startswith("member 1 (training.learning_rate=abc): --grid: training.learning_rate: ") \
        and "expected a number" in text


# --- sacct array rows (captured on the dev cluster)

def sacct_rows(name: str) -> list[list[str]]:
    lines = [ln for ln in (DATA / f"{name}.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0].startswith("JobID|JobIDRaw|")
    return [ln.split("|") for ln in lines[1:]]


def current(name: str) -> dict[str, tuple[str, str]]:
    """job id -> (raw id, state) of each job's newest instance."""
    return {jid: (rows[-1][1], rows[-1][2]) for jid, rows in arrays.group_rows(sacct_rows(name)).items()}


def test_pending_range_row_stands_for_each_task_and_raw_ids_are_not_task_ids():
    got = current("array_running_pending")
    assert got == {"1_0": ("2", "RUNNING"), "1_1": ("3", "RUNNING"), "1_2": ("1", "PENDING"),
                   "1_3": ("1", "PENDING")}
    # the held array: one row for all of it, no throttle
    assert current("array_held") == {f"5_{i}": ("5", "PENDING") for i in range(3)}


def test_requeued_task_has_every_instance_oldest_first_and_the_last_task_takes_the_array_raw_id():
    groups = arrays.group_rows(sacct_rows("array_final"))
    assert [r[2] for r in groups["1_0"]] == ["REQUEUED", "COMPLETED"]
    assert [r[1] for r in groups["1_3"]] == ["1"]  # the last task started runs under the array's own raw id
    assert all(len(groups[f"1_{i}"]) == 1 for i in (1, 2, 3))
    again = current("array_requeued_pending_again")
    assert again["1_0"] == ("2", "PENDING") and again["1_3"] == ("1", "RUNNING")


def test_a_task_with_its_own_row_ignores_a_stale_pending_range_row():
    # Slurm 22.05: task 2 split off the pending record (own raw id 14) and the array's record (raw 10) became task
    # 10_3; `scancel 10_3` ended it before slurmctld's 5 s db-index pass rewrote its JobID, so sacct shows the stale
    # range with the new state (from job_mgr.c / as_mysql_job.c; seen once on the dev cluster as member 2 of a
    # throttled sweep reported cancelled while Slurm ran it to completion)
    rows = [ln.split("|") for ln in ("10_0|11|REQUEUED", "10_1|12|RUNNING", "10_0|11|PENDING",
                                     "10_2|14|RUNNING", "10_[2-3%2]|10|CANCELLED by 1000")]
    got = {jid: rs[-1][2] for jid, rs in arrays.group_rows(rows).items()}
    assert got == {"10_0": "PENDING", "10_1": "RUNNING", "10_2": "RUNNING", "10_3": "CANCELLED by 1000"}


def test_an_ended_range_row_says_nothing_while_the_array_still_runs():
    # dev cluster, Slurm 22.05, `0-3%2`: member 0 requeued, task 2 split off (22:07:32.427), `scancel 1_3`
    # (22:07:32.855): sacct showed the range CANCELLED before task 2's own row, and kept the stale row for good
    from hpc_finetune.states import LIVE, from_slurm

    live = lambda raw: from_slurm(raw) in LIVE  # noqa: E731
    moment = [ln.split("|") for ln in ("1_0|REQUEUED", "1_1|RUNNING", "1_0|PENDING", "1_[2-3%2]|CANCELLED by 0")]
    assert arrays.stale_range_tasks(arrays.group_rows(moment), live) == {"1_2", "1_3"}
    final = [ln.split("|") for ln in ("1_0|REQUEUED", "1_1|COMPLETED", "1_2|COMPLETED", "1_[2-3%2]|CANCELLED by 0",
                                      "1_0|COMPLETED")]
    groups = arrays.group_rows(final)
    assert arrays.stale_range_tasks(groups, live) == set() and groups["1_2"][-1][1] == "COMPLETED"
    assert groups["1_3"][-1][1] == "CANCELLED by 0"  # once the array has ended, the range row is the truth
    # the whole array cancelled while tasks waited: the same row, nothing live, so it counts at once
    whole = [ln.split("|") for ln in ("5_0|CANCELLED by 0", "5_[1-3]|CANCELLED by 0")]
    assert arrays.stale_range_tasks(arrays.group_rows(whole), live) == set()


def test_accounting_lag_leaves_tasks_without_rows():
    # right after `scontrol release`, squeue showed 5_0 and 5_1 running; sacct had only 5_2 yet
    assert set(current("array_released_lagging")) == {"5_2"}
    assert current("array_submitted") == {}


def test_pending_ranges_expand_with_lists_and_throttles():
    assert arrays.expand("6_[1-3%2]") == ["6_1", "6_2", "6_3"]
    assert arrays.expand("6_[0,3-4]") == ["6_0", "6_3", "6_4"]
    assert arrays.expand("6_2") == ["6_2"] and arrays.expand("12") == ["12"]
    assert arrays.expand("6_[1-99999999999]") == []  # garbage is not expanded into memory
    assert arrays.query_ids(["6_0", "6_1", "12", "6_3", "", "13"]) == ["6", "12", "13"]
    assert arrays.array_of("6_3") == "6" and arrays.is_task("6_3") and not arrays.is_task("6")


# --- ranking

def run_dir(tmp_path: Path, name: str, *, losses=(), final=None, eval_loss=None, trainer_eval=None, tps=None):
    d = tmp_path / name
    out = d / "output"
    out.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps({"output_dir": str(out)}))
    lines = [json.dumps({"kind": "train", "step": 5 * (i + 1), "loss": x, "tokens_per_s": tps}) for i, x in
             enumerate(losses)]
    if trainer_eval is not None:
        lines.append(json.dumps({"kind": "eval", "step": 5 * len(losses), "eval_loss": trainer_eval}))
    (out / "progress.jsonl").write_text("".join(ln + "\n" for ln in lines) + '{"kind": "train", "lo')
    if final is not None:
        (out / "summary.json").write_text(json.dumps({"final_loss": final, "step": 5 * len(losses), "max_steps": 30,
                                                       "tokens_per_s": tps}))
    if eval_loss is not None:
        (d / "eval").mkdir()
        (d / "eval" / "metrics.json").write_text(json.dumps({"tuned": {"eval_loss": eval_loss}, "base": {}}))
    return SimpleNamespace(run_id=name, run_dir=str(d), output_dir=str(out))


def test_run_metric_prefers_eval_loss_then_final_train_loss(tmp_path):
    a = run_dir(tmp_path, "a", losses=(3.0, 2.0, 2.5), final=2.5, eval_loss=1.9, trainer_eval=2.2)
    b = run_dir(tmp_path, "b", losses=(3.0, 2.0), trainer_eval=2.2)
    c = run_dir(tmp_path, "c", losses=(3.0, 2.0, 2.4), final=2.4)
    d = run_dir(tmp_path, "d")
    assert ranking.run_metric(a.run_dir) == ("eval_loss", 1.9)  # `eval`'s result beats the trainer's own eval
    assert ranking.run_metric(b.run_dir) == ("eval_loss", 2.2)
    assert ranking.run_metric(c.run_dir) == ("train_loss", 2.4)  # final, not best (2.0)
    assert ranking.run_metric(d.run_dir) == ("train_loss", None)
    m = ranking.metrics(a.run_dir)
    assert m["best_loss"] == 2.0 and m["final_loss"] == 2.5 and m["step"] == 15


def test_rank_compares_one_metric_for_all_and_puts_runs_without_one_last(tmp_path):
    x = run_dir(tmp_path, "x", losses=(3.0, 2.6), final=2.6, eval_loss=1.5)
    y = run_dir(tmp_path, "y", losses=(3.0, 2.1), final=2.1)
    z = run_dir(tmp_path, "z", losses=(3.0, 2.3), final=2.3, eval_loss=1.2)
    empty = run_dir(tmp_path, "empty")
    # y has no eval loss: all are ranked by final train loss (an eval loss and a train loss don't compare)
    assert [r.run_id for r in ranking.rank([empty, x, y, z])] == ["y", "z", "x", "empty"]
    # every one has an eval loss: ranked by it
    assert [r.run_id for r in ranking.rank([x, z])] == ["z", "x"]
    best, metric, value = ranking.best([x, z, empty])
    assert (best.run_id, metric, value) == ("z", "train_loss", 2.3)  # `empty` has no eval loss
    best, metric, value = ranking.best([x, z])
    assert (best.run_id, metric, value) == ("z", "eval_loss", 1.2)
    assert ranking.best([empty]) == (None, "train_loss", None)


# --- status's campaign row (from index rows alone)

def index_row(run_id, state, *, campaign="c", kind="train", loss=None, job="6_0", created=1.0):
    return {"run_id": run_id, "state": state, "campaign": campaign, "kind": kind, "job_id": job, "nodes": 1,
            "gpus_per_node": 4, "created": created, "gpu_hours": 1.5, "requeues": 0,
            "progress": {"step": 5, "loss": loss} if loss is not None else None}


def test_campaign_row_counts_members_and_names_the_best_so_far():
    from hpc_finetune.campaigns import status

    runs = [index_row("c-a", "completed", loss=2.0), index_row("c-b", "running", loss=1.5, job="6_1"),
            index_row("c-c", "requeued", job="6_2"), index_row("c-d", "stopped", loss=1.2, job="6_3"),
            index_row("c-e", "pending", job="6_4"), index_row("c-merge", "pending", kind="merge", job="9")]
    row = status.summary("c", runs)
    assert row["counts"] == {"completed": 1, "running": 1, "pending": 2, "failed": 1}
    assert row["members"] == 5 and row["stage_jobs"] == 1 and row["state"] == "running" and row["job_id"] == "6"
    assert row["best"] == {"run_id": "c-d", "train_loss": 1.2} and row["gpu_hours"] == 9.0
    assert status.counts_text(row) == "5 member(s): 1 completed, 1 running, 2 pending, 1 failed; merge pending"
    chain = status.summary("d", [index_row("d-train", "failed", campaign="d", job="7"),
                                 index_row("d-merge", "skipped: train failed", campaign="d", kind="merge", job=""),
                                 index_row("d-eval", "skipped: train failed", campaign="d", kind="eval", job="")])
    assert status.counts_text(chain) == ("1 member(s): 0 completed, 0 running, 0 pending, 1 failed; "
                                         "merge+eval skipped: train failed")
    done = status.summary("c", [index_row("c-a", "completed"), index_row("c-b", "completed", job="6_1")])
    assert done["state"] == "completed" and done["best"] is None and status.best_text(done) == ""
    assert status.summary("c", [index_row("c-a", "completed"), index_row("c-b", "failed")])["state"] == "ended"


def test_fold_puts_one_row_where_the_campaign_first_appears():
    from hpc_finetune.campaigns import status

    rows = [index_row("plain-1", "completed", campaign=""), index_row("c-a", "running"),
            index_row("plain-2", "running", campaign=""), index_row("c-b", "pending", job="6_1")]
    every = {"c": [index_row("c-old", "completed", loss=0.5, job="6_9"), rows[1], rows[3]]}
    out = status.fold(rows, lambda c: every[c])
    assert [r["run_id"] for r in out] == ["plain-1", "c", "plain-2"]
    assert out[1]["members"] == 3 and out[1]["best"]["run_id"] == "c-old"  # members beyond the rows shown count


def test_compare_rows_rank_by_the_common_metric(tmp_path):
    from hpc_finetune.campaigns import compare
    from hpc_finetune.records import RunRecord

    recs = []
    for name, final in (("a", 2.5), ("b", None), ("c", 2.1)):
        ns = run_dir(tmp_path, name, losses=(3.0, final or 2.9), final=final)
        recs.append(RunRecord(run_id=name, name=name, cluster="x", scheduler="slurm", run_dir=ns.run_dir,
                              output_dir=ns.output_dir, created=1.0, nodes=1, gpus_per_node=4,
                              processes_per_node=4, time_seconds=60, member=len(recs), requeues=1))
    metric, rows = compare.rows(recs, {"a": {"lora.r": "8"}})
    assert metric == "train_loss" and [r["run_id"] for r in rows] == ["c", "a", "b"]
    assert [r["rank"] for r in rows] == [1, 2, 3]  # b is still running: its last logged loss (2.9) counts
    text = compare.table(metric, rows)
    assert text.splitlines()[1].split()[:2] == ["1", "c"] and "ranked by final train loss" in text
