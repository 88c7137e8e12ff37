"""The tokenized cache's config key (hpc_finetune/cachekey.py), one owner for the training core's fingerprint and a
sweep's --prepare grouping: which grids need one prepare job, which need one per member."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_finetune import cachekey


def member_configs(demo: Path, grid: list[str], sets: list[str] = (), seeds: int | None = None):
    """The members' whole configs, as `sweep` plans them (campaigns/sweep.py plan_sweep)."""
    from hpc_finetune.campaigns.sweep import SweepRequest, plan_sweep
    from hpc_finetune.records import Registry

    plan = plan_sweep(SweepRequest(config=demo / "run.yaml", sets=list(sets), grid=grid, seeds=seeds, check=False),
                      Registry())
    return plan


@pytest.mark.parametrize("grid,sets,seeds,expected", [
    # learning rate x rank, and learning rate x seeds (the demo has an eval file): one tokenized cache
    (["training.learning_rate=1e-3,3e-3", "lora.r=4,8"], [], None, [[0, 1, 2, 3]]),
    (["training.learning_rate=1e-3,3e-3"], [], 3, [[0, 1, 2, 3, 4, 5]]),
    # max_length enters the key: one cache per length, shared across the learning rates
    (["training.max_length=32,64"], [], None, [[0], [1]]),
    (["training.max_length=32,64", "training.learning_rate=1e-3,3e-3"], [], None, [[0, 1], [2, 3]]),
    # the eval split drawn from the training data with the seed: each seed holds out other rows
    (["training.learning_rate=1e-3"], ["data.eval_file=null", "data.eval_fraction=0.1"], 2, [[0], [1]]),
    # packing settings
    (["training.packing=true,false"], [], None, [[0], [1]]),
    (["training.packing_strategy=bfd,wrapped"], [], None, [[0], [1]]),
])
def test_members_are_grouped_by_their_tokenized_cache(home, demo_dir, grid, sets, seeds, expected):
    plan = member_configs(demo_dir, grid, sets, seeds)
    assert cachekey.groups(plan.configs) == expected


def test_the_cachekey_module_stays_light():
    """Login code imports it: nothing but the standard library and the run config (checked in a fresh process)."""
    import subprocess
    import sys

    code = ("import sys, hpc_finetune.cachekey; heavy = {'torch', 'transformers', 'datasets', 'trl', 'peft', "
            "'wandb'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fingerprint_separates_exactly_the_members_the_grouping_separates(home, demo_dir):
    """train/data.fingerprint is cachekey.config_key plus what the files hold: configs with equal config keys get
    equal fingerprints and configs with different ones different fingerprints."""
    pytest.importorskip("transformers")
    from hpc_finetune.train.data import fingerprint
    from hpc_finetune.train.model import load_tokenizer

    plan = member_configs(demo_dir, ["training.max_length=32,64", "training.learning_rate=1e-3,3e-3",
                                     "training.packing=true,false"], ["data.eval_file=null",
                                                                      "data.eval_fraction=0.1"], 2)
    tok = load_tokenizer(plan.configs[0])
    prints = [fingerprint(c, tok) for c in plan.configs]
    by_print: dict[str, list[int]] = {}
    for i, fp in enumerate(prints):
        by_print.setdefault(fp, []).append(i)
    groups = cachekey.groups(plan.configs)
    assert sorted(by_print.values()) == sorted(groups) and len(groups) == 2 * 2 * 2  # length x packing x seed


def test_sweep_with_prepare_imports_no_training_library(home, demo_dir, tmp_path):
    """The grouping runs on the login node: `sweep --prepare` over a field of the cache key (two prepare jobs queued,
    then the merge stage refused so nothing runs) loads no training library. A fresh process, as a user's shell."""
    import shutil
    import subprocess
    import sys

    demo = tmp_path / "demo"
    shutil.copytree(demo_dir, demo)
    argv = ["sweep", str(demo / "run.yaml"), "--grid", "training.max_length=32,64", "--prepare", "--then", "merge",
            "--name", "imp", "--no-check"]
    code = ("import sys\nfrom hpc_finetune.campaigns import chain\nfrom hpc_finetune.errors import UserError\n"
            "real = chain.queue_stage\n"
            "def refuse(*a, **k):\n"
            "    if a[4] == 'merge':\n        raise UserError('refused', source='test')\n"
            "    return real(*a, **k)\n"
            "chain.queue_stage = refuse\n"
            "from hpc_finetune.cli.main import main\n"
            f"rc = main({argv!r})\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'trl', 'peft', 'wandb') if m in sys.modules]\n"
            "print('RC=%s HEAVY=%s' % (rc, ','.join(heavy)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "RC=2 HEAVY=\n" in proc.stdout, proc.stdout + proc.stderr
    assert len(list((home / "hpc-finetune" / "runs").glob("imp-prepare-*"))) == 2  # the grouping did run
