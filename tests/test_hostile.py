"""Hostile and malformed input, as a careless or hostile user would give it (issue 15's corpus, kept for good).

Every case runs the real CLI in a fresh process, under a time limit and an address-space limit (so a regression
fails instead of hanging or eating the machine), and asserts what the house rules promise for bad input: exit
status 2, exactly one stderr line naming the file/flag/field, no traceback, no marker file from injected shell
code, and nothing created (no run directory, no run index). ``sbatch`` on PATH is a stand-in that records the
scripts it is given and never runs them.

The other tests here cover what a case list cannot: twenty concurrent submits of one name, SIGTERM in the middle
of a submit, the local scheduler's liveness probe and a later status correcting a premature verdict, a corrupt
record among good ones, `check --full`, secrets-like names that must stay accepted, and (marked `train`) a
broken line deep in the training data ending as one line in the job log and as the run's reason in `status`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import PY, cli

MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: the CLI needs ~100 MB; a bomb would need gigabytes
TIME_LIMIT = 60
HF = "hf_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"  # shaped like a Hugging Face token (not a real one)
HEX40 = "0123456789abcdef0123456789abcdef01234567"  # shaped like a wandb API key


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (TIME_LIMIT, TIME_LIMIT))


def bounded_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, bounded in memory and time (a regression fails, it does not hang)."""
    try:
        return subprocess.run([PY, "-m", "hpc_finetune", *args], capture_output=True, text=True, env=env,
                              timeout=TIME_LIMIT, preexec_fn=_limits, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hpc-finetune {' '.join(a[:60] for a in args)} ran past {TIME_LIMIT} s")


class World:
    """A user's world under tmp_path: HOME, run index, shared storage, a model, data, a stand-in sbatch."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.state = self.home / "state"
        self.shared = tmp / "shared"
        self.marker = tmp / "MARKER"
        self.clusters = tmp / "clusters"
        self.bin = tmp / "bin"
        for d in (self.home, self.shared, self.clusters, self.bin):
            d.mkdir(parents=True, exist_ok=True)
        self.sbatch_log = tmp / "sbatch.log"
        sbatch = self.bin / "sbatch"
        sbatch.write_text(textwrap.dedent(f"""\
            #!/bin/bash
            # stand-in sbatch: records the script path, never runs it
            echo "$@" >> {self.sbatch_log}
            if [ -n "$SBATCH_STANDIN_HOLD" ]; then  # hold until the test says go, then answer as told
              touch "$SBATCH_STANDIN_HOLD.started"
              for _ in $(seq 600); do [ -e "$SBATCH_STANDIN_HOLD.go" ] && break; sleep 0.1; done
              [ "$SBATCH_STANDIN_RC" = 0 ] || {{ echo "sbatch: error: stand-in refused" >&2; exit 1; }}
            fi
            echo "Submitted batch job $((100000 + RANDOM * 10 + $$ % 10))"
            """))
        sbatch.chmod(0o755)
        for name, rc in (("sacct", 0), ("scontrol", 1), ("sinfo", 1)):  # no live Slurm behind the stand-in
            (self.bin / name).write_text(f"#!/bin/bash\nexit {rc}\n")
            (self.bin / name).chmod(0o755)
        model = tmp / "m"
        model.mkdir()
        (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 4096}))
        (model / "model.safetensors").write_bytes(b"\0" * 16)
        (model / "tokenizer.json").write_text("{}")
        self.data = tmp / "d.jsonl"
        self.data.write_text("".join(json.dumps({"content": f"sample {i}"}) + "\n" for i in range(20)))
        self.profile = self.write_profile("site")
        self.config = self.write_config("run.yaml")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HPC_FINETUNE", "SCRATCH"))},
                    "HOME": str(self.home), "HPC_FINETUNE_HOME": str(self.state),
                    "PATH": f"{self.bin}:{os.environ['PATH']}", "HPC_FINETUNE_CLUSTER": str(self.profile),
                    "WANDB_MODE": "disabled"}

    def write_profile(self, name: str, extra: str = "", shared: str | None = None) -> Path:
        p = self.clusters / f"{name}.yaml"
        p.write_text(textwrap.dedent(f"""\
            scheduler: slurm
            partition: cpu
            gpus_per_node: 0
            max_nodes: 2
            default_time: "01:00:00"
            max_time: "1-00:00:00"
            storage:
              shared_root: {shared or self.shared}
            """) + extra)
        return p

    def write_config(self, name: str, extra: str = "", body: str | None = None) -> Path:
        p = self.tmp / name
        p.write_text(body if body is not None else
                     f"name: t\nmodel: {{path: {self.tmp / 'm'}}}\ndata: {{train_file: {self.data}}}\n" + extra)
        return p

    def created(self) -> list[str]:
        """What a rejected command must not have left behind."""
        out = []
        runs = self.shared / "hpc-finetune" / "runs"
        if runs.exists():
            out += [str(p) for p in runs.iterdir()]
        if (self.state / "registry.sqlite").exists():
            out.append(str(self.state / "registry.sqlite"))
        if self.marker.exists():
            out.append(str(self.marker))
        return out


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def assert_rejected(w: World, proc: subprocess.CompletedProcess, *needles: str, before: list[str] | None = None):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert len(lines[0]) < 1100, f"error line of {len(lines[0])} characters"
    for n in needles:
        assert n in lines[0], lines[0]
    assert w.created() == (before or []), w.created()
    assert not w.marker.exists()


# --- the corpus ------------------------------------------------------------------------------------------------
# Each case: (id, setup(world) -> (argv, extra env), needles that the one error line must hold).
BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """)


def _bomb_in(w: World, where: str) -> Path:
    """A billion-laughs run config whose bomb lands in ``where`` (name, lora.target_modules, extra_args)."""
    base = f"model: {{path: {w.tmp / 'm'}}}\ndata: {{train_file: {w.data}}}\n"
    nested = "\n".join("  " + ln for ln in BOMB.splitlines())
    if where == "name":
        body = f"x_defs:\n{nested}\nname: *i\n" + base
    elif where == "target_modules":
        body = f"name: t\n{base}lora:\n  target_modules: &a [q,q,q,q,q,q,q,q,q]\n  modules_to_save: [*a,*a,*a]\n"
    else:
        body = f"name: t\n{base}training:\n  extra_args:\n    defs:\n" + \
               "\n".join("      " + ln for ln in BOMB.splitlines()) + "\n    run_name: *i\n"
    return w.write_config("bomb.yaml", body=body)


def _long(n: int) -> str:
    return "x" * n


def _loop(w: World, name: str) -> Path:
    link = w.tmp / name
    link.symlink_to(link)
    return link


CASES = {
    # 1. shell injection through flags and free-form values: every source, one check
    "flag-partition-newline": (lambda w: (["render", "--partition", f"gpu\ntouch {w.marker} #", str(w.config)], {}),
                               ["--partition", "control characters"]),
    "flag-partition-newline-submit": (lambda w: (["submit", "--partition", f"gpu\ntouch {w.marker} #",
                                                  str(w.config)], {}), ["--partition", "control"]),
    "flag-partition-cr": (lambda w: (["render", "-p", "gpu\rx", str(w.config)], {}), ["--partition", "control"]),
    "flag-partition-tab": (lambda w: (["check", "--partition", "gpu\tx", str(w.config)], {}), ["--partition"]),
    "flag-time-newline": (lambda w: (["render", "--time", f"01:00:00\ntouch {w.marker}", str(w.config)], {}),
                          ["--time", "control"]),
    "set-partition-newline": (lambda w: (["render", "--set", 'resources.partition="gpu\\ntouch x"',
                                          str(w.config)], {}), ["--set", "resources.partition", "control"]),
    "set-extra-args-newline": (lambda w: (["render", "--set", 'training.extra_args.run_name="a\\ntouch x"',
                                           str(w.config)], {}), ["--set", "training.extra_args.run_name", "control"]),
    "yaml-extra-args-newline": (lambda w: (["submit", str(w.write_config(
        "x.yaml", 'training:\n  extra_args: {run_name: "a\\ntouch x"}\n'))], {}),
        ["x.yaml", "training.extra_args.run_name", "control"]),
    "yaml-extra-args-nested-list": (lambda w: (["render", str(w.write_config(
        "x.yaml", 'training:\n  extra_args: {report_to: ["a", "b\\u0007"]}\n'))], {}),
        ["x.yaml", "training.extra_args.report_to[1]", "control"]),
    "yaml-extra-args-key-newline": (lambda w: (["render", str(w.write_config(
        "x.yaml", 'training:\n  extra_args: {"a\\nb": 1}\n'))], {}), ["x.yaml", "control"]),
    "set-target-modules-newline": (lambda w: (["render", "--set", 'lora.target_modules="q_proj\\nk"',
                                              str(w.config)], {}), ["--set", "lora.target_modules", "control"]),
    "set-extra-args-inf": (lambda w: (["render", "--set", "training.extra_args.adam_beta2=.inf", str(w.config)],
                                      {}), ["--set", "training.extra_args.adam_beta2", "finite"]),
    "set-name-tab": (lambda w: (["render", "--set", 'name="a\\tb"', str(w.config)], {}), ["--set", "name"]),
    "yaml-output-dir-newline": (lambda w: (["render", str(w.write_config(
        "x.yaml", 'output_dir: "/tmp/a\\ntouch x"\n'))], {}), ["x.yaml", "output_dir", "control"]),
    "profile-partition-newline": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", 'constraint: "a\\ntouch x"\n')), str(w.config)], {}), ["p.yaml", "constraint", "control"]),
    "profile-extra-sbatch-newline": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", 'extra_sbatch: ["--mail-type=END\\ntouch x"]\n')), str(w.config)], {}), ["p.yaml", "extra_sbatch"]),
    # 2. environment variables expanded on the login node are values like any other
    "env-scratch-newline-render": (lambda w: (["render", "--cluster", str(w.write_profile("p", shared="$SCRATCH")),
                                               str(w.config)], {"SCRATCH": f"/tmp/s\ntouch {w.marker}"}),
                                   ["p.yaml", "storage.shared_root", "$SCRATCH", "control"]),
    "env-scratch-newline-submit": (lambda w: (["submit", "--cluster", str(w.write_profile("p", shared="$SCRATCH")),
                                               str(w.config)], {"SCRATCH": f"/tmp/s\ntouch {w.marker}"}),
                                   ["$SCRATCH", "control"]),
    "env-braced-default-newline": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", shared="${SCRATCH:-/tmp}/x")), str(w.config)], {"SCRATCH": "/tmp/s\rx"}), ["$SCRATCH", "control"]),
    "env-home-newline-shipped-local": (lambda w: (["render", "--cluster", "local", str(w.config)],
                                                  {"HOME": "/tmp/h\ntouch x"}), ["local.yaml", "$HOME", "control"]),
    # 4. YAML alias bombs and unbounded input: refused at load, in bounded time and memory
    "bomb-in-name": (lambda w: (["submit", str(_bomb_in(w, "name"))], {}), ["bomb.yaml", "aliases"]),
    "bomb-in-target-modules": (lambda w: (["check", str(_bomb_in(w, "target_modules"))], {}),
                               ["bomb.yaml", "aliases"]),
    "bomb-in-extra-args": (lambda w: (["submit", str(_bomb_in(w, "extra_args"))], {}), ["bomb.yaml", "aliases"]),
    "bomb-in-profile": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "x_defs:\n" + "\n".join("  " + ln for ln in BOMB.splitlines()) + "\nmodules: *i\n")), str(w.config)],
        {}), ["p.yaml", "aliases"]),
    "alias-in-set": (lambda w: (["render", "--set", "lora.target_modules=[&a q, *a]", str(w.config)], {}),
                     ["--set", "aliases"]),
    "single-alias": (lambda w: (["render", str(w.write_config(
        "x.yaml", "resources: {partition: &p cpu}\nlogging: {wandb_project: *p}\n"))], {}), ["x.yaml", "aliases"]),
    "merge-key": (lambda w: (["render", str(w.write_config(
        "x.yaml", "base: &b {r: 8}\nlora:\n  <<: *b\n"))], {}), ["x.yaml", "alias"]),
    "config-too-large": (lambda w: (["render", str(w.write_config("big.yaml", body="# " + "x" * (2 << 20)))], {}),
                         ["big.yaml", "larger than"]),
    "render-dev-zero": (lambda w: (["render", "/dev/zero"], {}), ["/dev/zero", "larger than"]),
    "cluster-dev-zero": (lambda w: (["render", "--cluster", "/dev/zero", str(w.config)], {}), ["/dev/zero"]),
    "config-is-a-folder": (lambda w: (["render", str(w.tmp / "m")], {}), ["folder"]),
    "config-not-utf8": (lambda w: (["render", str(_binary(w))], {}), ["bin.yaml", "UTF-8"]),
    "yaml-nested-too-deep": (lambda w: (["render", str(w.write_config("deep.yaml", body="x: " + "[" * 100_000))],
                                        {}), ["deep.yaml"]),
    # 6. secrets through side doors: refused by name and by value shape, with the way to pass them
    "sbatch-export-token": (lambda w: (["submit", "--cluster", str(w.write_profile(
        "p", f'extra_sbatch: ["--export=ALL,HF_TOKEN={HF}"]\n')), str(w.config)], {}), ["p.yaml", "secret"]),
    "sbatch-export-token-name-only-value": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", 'extra_sbatch: ["--export=ALL,WANDB_API_KEY=abc"]\n')), str(w.config)], {}), ["extra_sbatch", "secret"]),
    "set-hub-token": (lambda w: (["submit", "--set", "training.extra_args.hub_token=abc", str(w.config)], {}),
                      ["--set", "training.extra_args.hub_token", "secret"]),
    "yaml-hub-token": (lambda w: (["submit", str(w.write_config(
        "x.yaml", "training: {extra_args: {hub_token: abc}}\n"))], {}), ["x.yaml", "hub_token", "secret"]),
    "extra-env-hf-auth": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {HF_AUTH: x}\n")), str(w.config)], {}), ["extra_env.HF_AUTH", "secret"]),
    "extra-env-db-pwd": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {DB_PWD: x}\n")), str(w.config)], {}), ["extra_env.DB_PWD", "secret"]),
    "extra-env-credentials": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {CREDENTIALS: x}\n")), str(w.config)], {}), ["extra_env.CREDENTIALS", "secret"]),
    "extra-env-wandb-key": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {WANDB_API_KEY: x}\n")), str(w.config)], {}), ["WANDB_API_KEY", "export it"]),
    "extra-env-token-shaped-value": (lambda w: (["submit", "--cluster", str(w.write_profile(
        "p", f"extra_env: {{MY_SETTING: {HF}}}\n")), str(w.config)], {}), ["extra_env.MY_SETTING", "secret"]),
    "set-wandb-key-shaped-value": (lambda w: (["render", "--set", f"training.extra_args.run_name={HEX40}",
                                               str(w.config)], {}), ["--set", "secret"]),
    "yaml-token-in-wandb-entity": (lambda w: (["render", str(w.write_config(
        "x.yaml", f"logging: {{wandb_entity: {HF}}}\n"))], {}), ["logging.wandb_entity", "secret"]),
    "flag-token-value": (lambda w: (["render", "--partition", HF, str(w.config)], {}), ["--partition", "secret"]),
    "extra-env-overrides-hpcft": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {HPCFT_RUN_DIR: /tmp}\n")), str(w.config)], {}), ["extra_env.HPCFT_RUN_DIR", "itself"]),
    "extra-env-overrides-offline": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {HF_HUB_OFFLINE: '0'}\n")), str(w.config)], {}), ["HF_HUB_OFFLINE", "offline"]),
    "extra-env-overrides-path": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {PATH: /tmp}\n")), str(w.config)], {}), ["extra_env.PATH"]),
    "extra-env-overrides-hf-home": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "extra_env: {HF_HOME: /tmp}\n")), str(w.config)], {}), ["extra_env.HF_HOME", "caches.hf_home"]),
    # 7. what used to be tracebacks
    "model-path-name-too-long": (lambda w: (["submit", "--set", f"model.path=/tmp/{_long(300)}/m", str(w.config)],
                                            {}), ["model.path"]),
    "data-path-name-too-long": (lambda w: (["check", "--set", f"data.train_file={w.tmp}/{_long(300)}.jsonl",
                                            str(w.config)], {}), ["data.train_file"]),
    "model-path-symlink-loop": (lambda w: (["submit", "--set", f"model.path={_loop(w, 'loop')}", str(w.config)],
                                           {}), ["model.path"]),
    "data-path-symlink-loop": (lambda w: (["check", "--set", f"data.train_file={_loop(w, 'loop.jsonl')}",
                                           str(w.config)], {}), ["data.train_file"]),
    "config-path-name-too-long": (lambda w: (["render", f"/tmp/{_long(300)}.yaml"], {}),
                                  ["File name too long"]),
    "cluster-name-too-long": (lambda w: (["render", "--cluster", _long(300), str(w.config)], {}), ["--cluster"]),
    "home-under-a-file-submit": (lambda w: (["submit", str(w.config)],
                                            {"HPC_FINETUNE_HOME": str(_file(w, "f") / "state")}),
                                 ["HPC_FINETUNE_HOME", "is a file"]),
    "home-under-a-file-status": (lambda w: (["status"], {"HPC_FINETUNE_HOME": str(_file(w, "f") / "state")}),
                                 ["HPC_FINETUNE_HOME"]),
    "corrupt-registry-status": (lambda w: (["status"], {"_corrupt": "1"}), ["registry.sqlite", "move it aside"]),
    "corrupt-registry-submit": (lambda w: (["submit", str(w.config)], {"_corrupt": "1"}), ["registry.sqlite"]),
    # 8. values that make no sense
    "duplicate-key-top": (lambda w: (["render", str(w.write_config("x.yaml", "name: u\n"))], {}),
                          ["x.yaml", "duplicate key 'name'"]),
    "duplicate-key-nested": (lambda w: (["render", str(w.write_config(
        "x.yaml", "lora:\n  r: 8\n  r: 16\n"))], {}), ["x.yaml", "duplicate key 'r'"]),
    "lr-nan-set": (lambda w: (["render", "--set", "training.learning_rate=.nan", str(w.config)], {}),
                    ["--set", "training.learning_rate", "finite"]),
    "lr-inf-yaml": (lambda w: (["render", str(w.write_config("x.yaml", "training: {learning_rate: .inf}\n"))], {}),
                    ["x.yaml", "learning_rate", "finite"]),
    "lr-inf-string": (lambda w: (["render", "--set", "training.learning_rate=1e999", str(w.config)], {}),
                      ["training.learning_rate", "finite"]),
    "negative-epochs": (lambda w: (["render", "--set", "training.num_train_epochs=-1", str(w.config)], {}),
                        ["training.num_train_epochs"]),
    "negative-workers": (lambda w: (["render", "--set", "training.dataloader_num_workers=-1", str(w.config)], {}),
                         ["training.dataloader_num_workers"]),
    "processes-beyond-cpus": (lambda w: (["render", "--set", "launch.processes_per_node=64", str(w.config)], {}),
                              ["launch.processes_per_node", "CPU"]),
    "max-length-beyond-model": (lambda w: (["check", "--set", "training.max_length=100000", str(w.config)], {}),
                                ["training.max_length", "max_position_embeddings 4096"]),
    "signal-not-below-time-limit": (lambda w: (["render", "--time", "00:04:00", str(w.config)], {}),
                                    ["--time", "signal_seconds"]),
    "signal-not-below-default-time": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "signal_seconds: 7200\n")), str(w.config)], {}), ["p.yaml", "signal_seconds"]),
    "negative-max-requeues": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "max_requeues: -1\n")), str(w.config)], {}), ["p.yaml", "max_requeues"]),
    "negative-retry-on-failure": (lambda w: (["render", "--cluster", str(w.write_profile(
        "p", "retry_on_failure: -2\n")), str(w.config)], {}), ["p.yaml", "retry_on_failure"]),
    "warmup-ratio-above-one": (lambda w: (["render", "--set", "training.warmup_ratio=1.5", str(w.config)], {}),
                               ["training.warmup_ratio"]),
    "flag-nodes-zero": (lambda w: (["render", "--nodes", "0", str(w.config)], {}), ["--nodes", "resources.nodes"]),
    "flag-gpus-negative": (lambda w: (["render", "--gpus", "-1", str(w.config)], {}), ["--gpus"]),
    "flag-time-garbage": (lambda w: (["render", "--time", "soon", str(w.config)], {}), ["--time"]),
    # 9. bad data, found on the login node
    "chat-content-number": (lambda w: (["check", "--set", "data.format=chat", "--set",
                                        f"data.train_file={_data(w, 'c.jsonl', [{'messages': [{'role': 'user', 'content': 3}]}])}",  # noqa: E501
                                        str(w.config)], {}), ["data.train_file", "record 1", "content"]),
    "chat-content-null": (lambda w: (["submit", "--set", "data.format=chat", "--set",
                                      f"data.train_file={_data(w, 'c.jsonl', [{'messages': [{'role': 'user', 'content': None}]}])}",  # noqa: E501
                                      str(w.config)], {}), ["content", "null"]),
    "chat-content-list": (lambda w: (["check", "--set", "data.format=chat", "--set",
                                      f"data.train_file={_data(w, 'c.jsonl', [{'messages': [{'role': 'user', 'content': ['a']}]}])}",  # noqa: E501
                                      str(w.config)], {}), ["content", "a list"]),
    "text-content-number": (lambda w: (["check", "--set", f"data.train_file={_data(w, 't.jsonl', [{'content': 7}])}",
                                        str(w.config)], {}), ["record 1", "not text"]),
    "broken-line-deep-full": (lambda w: (["check", "--full", "--set", f"data.train_file={_deep_broken(w)}",
                                          str(w.config)], {}), ["data.train_file", "line 3001"]),
    "text-named-parquet": (lambda w: (["submit", "--set", f"data.train_file={_text_as(w, 'x.parquet')}",
                                       str(w.config)], {}), ["x.parquet", "Parquet"]),
    "text-named-arrow": (lambda w: (["check", "--set", f"data.train_file={_text_as(w, 'x.arrow')}",
                                     str(w.config)], {}), ["x.arrow", "Arrow"]),
    "json-large-not-array": (lambda w: (["check", "--set", f"data.train_file={_big_json(w)}", str(w.config)], {}),
                             ["big.json", "not a JSON array"]),
    "data-is-dev-zero": (lambda w: (["check", "--set", f"data.train_file={_link(w, 'z.jsonl', '/dev/zero')}",
                                    str(w.config)], {}), ["data.train_file", "/dev/zero"]),
    "data-is-a-fifo": (lambda w: (["check", "--set", f"data.train_file={_fifo(w, 'f.jsonl')}", str(w.config)], {}),
                       ["f.jsonl", "not a regular file"]),
    "csv-without-the-column": (lambda w: (["check", "--set", f"data.train_file={_csv_bad(w)}", str(w.config)], {}),
                               ["bad.csv", "no 'content' column"]),
    # 10. cosmetic but real
    "huge-value-truncated": (lambda w: (["render", "--partition", _long(100_000), str(w.config)], {}),
                             ["--partition", "100,000 characters"]),
    "huge-unknown-key-truncated": (lambda w: (["render", "--set", f"{_long(100_000)}=1", str(w.config)], {}),
                                   ["unknown key"]),
    "model-path-is-a-file": (lambda w: (["check", "--set", f"model.path={w.data}", str(w.config)], {}),
                             ["model.path", "is a file"]),
    "unquoted-no-is-boolean": (lambda w: (["render", str(w.write_config("x.yaml", "resources: {partition: no}\n"))],
                                          {}), ["resources.partition", "booleans", "quotes"]),
    "run-name-invalid": (lambda w: (["render", "--set", "name=../../etc", str(w.config)], {}), ["--set", "name"]),
}


def _binary(w: World) -> Path:
    p = w.tmp / "bin.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    return p


def _file(w: World, name: str) -> Path:
    p = w.tmp / name
    p.write_text("a file, not a folder\n")
    return p


def _data(w: World, name: str, recs: list) -> Path:
    p = w.tmp / name
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def _deep_broken(w: World) -> Path:
    p = w.tmp / "deep.jsonl"
    lines = [json.dumps({"content": f"s {i}"}) for i in range(5000)]
    lines[3000] = '{"content": "cut here'
    p.write_text("\n".join(lines) + "\n")
    return p


def _text_as(w: World, name: str) -> Path:
    p = w.tmp / name
    p.write_text('{"content": "I am JSON lines, not a columnar file"}\n')
    return p


def _big_json(w: World) -> Path:
    p = w.tmp / "big.json"
    with p.open("w") as f:
        f.write('{"rows": [')
        f.write(",".join(['{"content": "' + "y" * 1000 + '"}'] * 10_000))
        f.write("]}")
    return p


def _link(w: World, name: str, target: str) -> Path:
    p = w.tmp / name
    p.symlink_to(target)
    return p


def _csv_bad(w: World) -> Path:
    p = w.tmp / "bad.csv"
    p.write_text("text,label\nhello,1\n")
    return p


def _fifo(w: World, name: str) -> Path:
    p = w.tmp / name
    os.mkfifo(p)  # opening it for reading would block forever
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_one_line_and_leaves_nothing(world, case):
    setup, needles = CASES[case]
    argv, extra = setup(world)
    env = {**world.env, **extra}
    if env.pop("_corrupt", None):
        world.state.mkdir(parents=True)
        (world.state / "registry.sqlite").write_bytes(b"this is not a database\n" * 100)
    before = world.created()
    proc = bounded_cli(*argv, env=env)
    assert_rejected(world, proc, *needles, before=before)
    assert not world.sbatch_log.exists(), "nothing may reach sbatch"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


# --- what a case list cannot say ---------------------------------------------------------------------------------
def test_names_and_values_that_only_look_like_secrets_are_accepted(world):
    """No loose substrings: TOKENIZERS_PARALLELISM, max_tokens, a path with 'token' or a 40-hex snapshot folder."""
    prof = world.write_profile("p", "extra_env: {TOKENIZERS_PARALLELISM: 'false', KEYRING_BACKEND: none}\n")
    snap = world.tmp / "models--x" / "snapshots" / HEX40
    snap.mkdir(parents=True)
    proc = bounded_cli("render", "--cluster", str(prof), "--set", "training.extra_args.max_tokens_hint=3",
                       "--set", f"output_dir={world.tmp}/token_study/{HEX40}", str(world.config), env=world.env)
    assert proc.returncode == 0, proc.stderr
    assert "export TOKENIZERS_PARALLELISM='false'" in proc.stdout or "TOKENIZERS_PARALLELISM=" in proc.stdout
    assert world.created() == []


def test_render_plan_and_check_create_nothing(world):
    """No side effects: the run index and run directories appear only when a run is submitted."""
    for argv in (["render", str(world.config)], ["check", str(world.config)],
                 ["submit", "--dry-run", str(world.config)], ["status"]):
        proc = bounded_cli(*argv, env=world.env)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert world.created() == [], argv
    proc = bounded_cli("plan", "--cluster", "a100-example", str(world.config), env=world.env)
    assert not (world.state / "registry.sqlite").exists(), proc.stderr


def test_submit_says_how_many_records_it_sampled_and_check_full_reads_all(world):
    sub = bounded_cli("submit", str(world.config), env=world.env)
    assert sub.returncode == 0, sub.stderr
    assert "checked the first 5 record(s)" in sub.stdout and "check --full" in sub.stdout
    full = bounded_cli("check", "--full", str(world.config), env=world.env)
    assert full.returncode == 0, full.stderr
    assert "checked all 20 records" in full.stdout


def test_twenty_concurrent_submits_get_twenty_directories_and_rows(world):
    procs = [subprocess.Popen([PY, "-m", "hpc_finetune", "submit", "--no-check", str(world.config)],
                              env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_limits) for _ in range(20)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    ids = sorted(line.split()[2] for out, _ in outs for line in out.splitlines() if line.startswith("submitted run"))
    expected = sorted(["t"] + [f"t-{n}" for n in range(2, 21)])
    assert ids == expected
    runs = world.shared / "hpc-finetune" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == expected
    for run_id in expected:  # each directory whole: its own record, its own script
        rec = json.loads((runs / run_id / "record.json").read_text())
        assert rec["run_id"] == run_id and rec["segments"]
        assert f"--output={runs / run_id}/jobs/" in (runs / run_id / "job.sh").read_text()
    rows = json.loads(cli("status", "--all", "--json", env=world.env, check=True).stdout)
    assert sorted(r["run_id"] for r in rows) == expected
    assert len(world.sbatch_log.read_text().splitlines()) == 20


def _submit_killed_while_sbatch_runs(world: World, sbatch_rc: int) -> tuple[subprocess.Popen, str]:
    """SIGTERM a submit while (stand-in) sbatch holds, with the run directory half-written; then let sbatch answer."""
    hold = world.tmp / f"hold{sbatch_rc}"
    env = {**world.env, "SBATCH_STANDIN_HOLD": str(hold), "SBATCH_STANDIN_RC": str(sbatch_rc)}
    proc = subprocess.Popen([PY, "-m", "hpc_finetune", "submit", "--no-check", str(world.config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limits)
    deadline = time.time() + 120
    while not Path(f"{hold}.started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the stand-in sbatch never started"
        time.sleep(0.1)
    runs = world.shared / "hpc-finetune" / "runs"
    assert [p.name for p in runs.iterdir()] == ["t"]  # mid-way: the directory is there, being written
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    Path(f"{hold}.go").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    return proc, err


def test_sigterm_in_the_middle_of_a_submit_leaves_no_run_directory(world):
    """sbatch refuses after the SIGTERM: the half-written run directory is removed, nothing is recorded."""
    _submit_killed_while_sbatch_runs(world, sbatch_rc=1)
    assert list((world.shared / "hpc-finetune" / "runs").iterdir()) == []
    assert not (world.state / "registry.sqlite").exists()


def test_sigterm_while_the_scheduler_accepts_the_job_records_it_whole(world):
    """sbatch accepts after the SIGTERM: the job exists, so the submit finishes recording it, then exits."""
    _submit_killed_while_sbatch_runs(world, sbatch_rc=0)
    rows = json.loads(cli("status", "--json", env=world.env, check=True).stdout)
    assert [r["run_id"] for r in rows] == ["t"] and rows[0]["job_id"]
    assert (world.shared / "hpc-finetune" / "runs" / "t" / "job.sh").is_file()


def test_sigterm_while_a_chains_job_is_accepted_cancels_it_with_the_chain(world):
    """`submit --then merge`: SIGTERM while sbatch accepts the training job. The job exists, so it is recorded
    whole, then the chain rolls back: that job is cancelled and recorded CANCELLED with the reason, and no stage is
    queued after it (a chain may not be left half-queued; before, the job stayed queued outside the roll-back)."""
    scancel_log = world.tmp / "scancel.log"
    (world.bin / "scancel").write_text(f'#!/bin/bash\necho "$@" >> {scancel_log}\n')
    (world.bin / "scancel").chmod(0o755)
    hold = world.tmp / "hold"
    env = {**world.env, "SBATCH_STANDIN_HOLD": str(hold), "SBATCH_STANDIN_RC": "0"}
    proc = subprocess.Popen([PY, "-m", "hpc_finetune", "submit", "--no-check", "--then", "merge", str(world.config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limits)
    deadline = time.time() + 120
    while not Path(f"{hold}.started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the stand-in sbatch never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    Path(f"{hold}.go").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert len(world.sbatch_log.read_text().splitlines()) == 1  # the merge stage never reached sbatch
    rec = json.loads((world.shared / "hpc-finetune" / "runs" / "t-train" / "record.json").read_text())
    job_id = rec["segments"][0]["job_id"]
    assert rec["state"] == "cancelled" and rec["reason"] == "the chain could not be queued", rec
    assert scancel_log.read_text().split() == [job_id]


def test_status_shows_a_corrupt_record_as_unreadable_and_goes_on(world):
    for _ in range(2):
        assert bounded_cli("submit", "--no-check", str(world.config), env=world.env).returncode == 0
    runs = world.shared / "hpc-finetune" / "runs"
    (runs / "t" / "record.json").write_text("{ not json")
    env = world.env
    proc = bounded_cli("status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["run_id"]: r for r in json.loads(proc.stdout)}
    assert rows["t"]["state"] == "unreadable" and "record.json" in rows["t"]["reason"]
    assert rows["t-2"]["state"] == "pending"
    one = bounded_cli("status", "t", env=env)
    assert_rejected(world, one, "record.json", "unreadable", before=world.created())


def test_local_liveness_survives_exec_and_a_reused_pid(tmp_path):
    """A job mid-exec is alive (the old cmdline probe said dead 80 times in 100); a reused pid is not ours."""
    from hpc_finetune.scheduler.local import _alive, _proc_stat

    for _ in range(30):
        p = subprocess.Popen(["bash", "-c", f"exec {PY} -c 'import time; time.sleep(30)' submitit"],
                             start_new_session=True)
        stat = _proc_stat(p.pid)
        assert stat is not None
        started = stat[1]
        for _ in range(200):  # through bash's exec of python: never judged dead
            assert _alive(p.pid, started)
        assert not _alive(p.pid, str(int(started) - 1))  # same pid, another start: a reused pid
        p.kill()
        p.wait()
        assert not _alive(p.pid, started)


def test_a_later_status_corrects_a_premature_ended_verdict(world, monkeypatch):
    """A local run recorded as ended without a result is looked at again; alive, it is running again."""
    from hpc_finetune.records import NO_RESULT, Registry, RunRecord, Segment
    from hpc_finetune.scheduler.local import _proc_stat
    from hpc_finetune.tracking import refresh

    monkeypatch.setenv("HPC_FINETUNE_HOME", str(world.state))
    run_dir = world.tmp / "run"
    (run_dir / "jobs").mkdir(parents=True)
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (run_dir / "jobs" / f"{p.pid}.starttime").write_text(_proc_stat(p.pid)[1] + "\n")
        rec = RunRecord(run_id="r", name="r", cluster="local", scheduler="local", run_dir=str(run_dir),
                        output_dir=str(run_dir / "output"), created=time.time(), nodes=1, gpus_per_node=0,
                        processes_per_node=1, time_seconds=60,
                        segments=[Segment(job_id=str(p.pid), started_by="submit", submitted=time.time(),
                                          state="failed", reason=NO_RESULT)],
                        state="failed", reason=NO_RESULT)
        rec.save()
        reg = Registry()
        reg.upsert(rec)
        assert [r["run_id"] for r in reg.live_rows()] == ["r"]  # looked at again by the next status
        proc = bounded_cli("status", "--json", env=world.env)
        row = json.loads(proc.stdout)[0]
        assert row["state"] == "running" and row["reason"] == "", row
    finally:
        p.kill()
        p.wait()
    refresh(Registry(), [RunRecord.load(run_dir)])
    row = Registry().rows("r")[0]
    assert row["state"] == "failed" and row["reason"] == NO_RESULT


def test_check_full_says_when_a_format_cannot_be_read_here(world, monkeypatch):
    from types import SimpleNamespace

    from hpc_finetune.datacheck import check_data_file

    p = world.tmp / "ok.parquet"
    p.write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    cfg = SimpleNamespace(format="text", text_field="content", messages_field="messages")
    problem, note = check_data_file(p, cfg, full=True)
    assert problem is None and "pyarrow is not installed" in note


@pytest.mark.train
def test_a_data_error_on_the_node_is_one_log_line_and_the_runs_reason(world, demo_dir):
    """A broken line deep in the JSONL passes the default check; the training core ends with one line in the
    job log (no traceback) and `status` shows that line as the run's reason."""
    data = world.tmp / "deep.jsonl"
    good = [json.loads(ln) for ln in (demo_dir / "text.jsonl").read_text().splitlines()[:50]]
    lines = [json.dumps(r) for r in good * 4]
    lines[150] = '{"content": "cut'
    data.write_text("\n".join(lines) + "\n")
    cfg = world.write_config("train.yaml", body=textwrap.dedent(f"""\
        name: deep
        model: {{path: {demo_dir / 'model'}}}
        data: {{train_file: {data}}}
        training: {{max_steps: 2, precision: fp32, max_length: 64, per_device_train_batch_size: 2,
                    gradient_accumulation_steps: 1, gradient_checkpointing: false}}
        """))
    env = {**world.env, "HPC_FINETUNE_CLUSTER": "local", "HPCFT_TOKENIZED_CACHE": str(world.tmp / "tok")}
    local = world.write_profile("loc", shared=str(world.shared)).read_text().replace("scheduler: slurm",
                                                                                      "scheduler: local")
    local = local.replace("max_nodes: 2", "max_nodes: 1").replace("partition: cpu\n", "")
    (world.clusters / "loc.yaml").write_text(local)
    env["HPC_FINETUNE_CLUSTER"] = str(world.clusters / "loc.yaml")
    proc = subprocess.run([PY, "-m", "hpc_finetune", "submit", "--wait", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    row = json.loads(cli("status", "deep", "--json", env=env, check=True).stdout)[0]
    assert row["state"] == "failed"
    assert "does not parse as jsonl" in row["reason"] and "data.train_file" in row["reason"], row
    assert "An error occurred while generating" not in row["reason"], row  # the reader's own words, not the wrapper's
    log = cli("logs", "deep", env=env, check=True).stdout
    errors = [ln for ln in log.splitlines() if "hpc-finetune train: error:" in ln]
    assert len(errors) == 1 and row["reason"] in errors[0], log[-3000:]
    assert "Traceback" not in log.split("hpc-finetune train: error:")[0][-5000:], log[-5000:]
