"""The rendered launch files go through accelerate's and DeepSpeed's own loaders, exactly as on a node.

For each strategy we take the command the node program builds for node 1 of 2, parse it with
`accelerate launch`'s own parser and validation (which reads our accelerate_config.yaml), let accelerate prepare the
per-node environment, build accelerate's plugin from that environment, and validate the DeepSpeed JSON with
DeepSpeed's config class after transformers fills its "auto" values. Nothing is compared as strings alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpc_finetune.job.launch import NodeInfo, NodeProgram
from hpc_finetune.profile import load_profile_file
from hpc_finetune.render import launch_files
from hpc_finetune.resources import data_dir
from hpc_finetune.runconfig import load_run_config
from hpc_finetune.runs import prepare_at

pytestmark = pytest.mark.train

RUN = "name: cfg\nmodel: {path: /models/llama}\ndata: {train_file: /data/train.jsonl}\n"
VARIANTS = {
    "ddp": "strategy: ddp",
    "zero2": "strategy: deepspeed, zero_stage: 2",
    "zero2-offload": "strategy: deepspeed, zero_stage: 2, offload_optimizer: true",
    "zero3": "strategy: deepspeed, zero_stage: 3",
    "zero3-offload": "strategy: deepspeed, zero_stage: 3, offload_optimizer: true, offload_params: true",
    "fsdp": "strategy: fsdp",
    "fsdp-offload": "strategy: fsdp, offload_params: true",
}


@pytest.fixture(autouse=True)
def _user(monkeypatch):
    monkeypatch.setenv("USER", "alice")  # the example profile's storage roots name $USER


def rendered(tmp_path: Path, launch: str, extra: str = "") -> tuple[object, Path]:
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(RUN + f"launch: {{{launch}}}\nresources: {{nodes: 2, gpus_per_node: 4}}\n" + extra)
    profile = load_profile_file(data_dir("clusters") / "a100-example.yaml")
    run_dir = tmp_path / "run"
    prep = prepare_at(profile, load_run_config(cfg_path), run_dir, source=str(cfg_path))
    run_dir.mkdir()
    for name, text in launch_files(prep.cfg, prep.spec).items():
        (run_dir / name).write_text(text)
    return prep, run_dir


def accelerate_args(prep, run_dir: Path, node_rank: int = 1):
    """What `accelerate launch` makes of the exact argv our node program runs on node `node_rank`."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    program = NodeProgram(run_dir=str(run_dir), nodes=2, processes_per_node=4, gpus_per_node=4,
                          strategy=prep.cfg.launch.strategy, launcher="accelerate", python="python")
    info = NodeInfo(node_rank=node_rank, num_nodes=2, hostname="gpu002", main_host="gpu001",
                    main_addr="10.0.0.1", port=21234, job_id="1234")
    argv = program.command(info)
    assert argv[:3] == ["python", "-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(argv[3:])
    args, defaults, from_flag = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's launch_command does before it calls the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if from_flag else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    return args, defaults


def rendezvous(args) -> str:
    """Where torch.distributed.run will meet: master address and port, or the static rendezvous endpoint."""
    if getattr(args, "master_addr", None):
        return f"{args.master_addr}:{args.master_port}"
    return args.rdzv_endpoint


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_accelerate_accepts_rendered_config(tmp_path, monkeypatch, variant):
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    prep, run_dir = rendered(tmp_path, VARIANTS[variant])
    args, defaults = accelerate_args(prep, run_dir)
    assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 8, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 21234)
    strategy = prep.cfg.launch.strategy
    expected = {"ddp": DistributedType.MULTI_GPU, "deepspeed": DistributedType.DEEPSPEED,
                "fsdp": DistributedType.FSDP}[strategy]
    assert defaults.distributed_type == expected
    if strategy == "deepspeed":
        cmd, env = prepare_deepspeed_cmd_env(args)
        assert cmd is None, "multi-node DeepSpeed must use the standard launcher (no pdsh, no ssh)"
        assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "4")
        assert rendezvous(args) == "10.0.0.1:21234"
        assert Path(env["ACCELERATE_DEEPSPEED_CONFIG_FILE"]) == run_dir / "deepspeed_config.json"
        zero3 = prep.cfg.launch.zero_stage == 3
        assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == str(zero3).lower()
        from accelerate.utils import DeepSpeedPlugin

        for key, value in env.items():
            if key.startswith("ACCELERATE_"):
                monkeypatch.setenv(key, value)
        plugin = DeepSpeedPlugin()  # reads the environment accelerate launch set, and our JSON through it
        assert plugin.zero_stage == prep.cfg.launch.zero_stage
        assert plugin.is_zero3_init_enabled() == zero3
        zero = plugin.deepspeed_config["zero_optimization"]
        assert zero["offload_optimizer"]["device"] == ("cpu" if prep.cfg.launch.offload_optimizer else "none")
        if zero3:
            assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    else:
        env = prepare_multi_gpu_env(args)
        assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "4")
        assert rendezvous(args) == "10.0.0.1:21234"
        if strategy == "fsdp":
            for key, value in env.items():
                if key.startswith("FSDP_") or key.startswith("ACCELERATE_"):
                    monkeypatch.setenv(key, value)
            assert env["FSDP_VERSION"] == "2" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
            plugin = fsdp_plugin(monkeypatch)
            assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # FSDP2 full shard
            assert str(plugin.state_dict_type).endswith("SHARDED_STATE_DICT")
            assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
            assert (type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy") == prep.cfg.launch.offload_params
            assert plugin.activation_checkpointing == prep.cfg.training.gradient_checkpointing


def fsdp_plugin(monkeypatch, **kwargs):
    """accelerate's FSDP plugin from the environment (the accelerate path) or from Trainer arguments (torchrun).
    Its CPU-RAM-efficient loading asks accelerate for the current CUDA device, which this machine lacks: that one
    switch is turned off here (and compared separately) so the plugin parses the rest."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    if kwargs:
        kwargs["cpu_ram_efficient_loading"] = False
    return FullyShardedDataParallelPlugin(**kwargs)


def plugin_view(plugin) -> dict:
    return {name: str(getattr(plugin, name)) for name in (
        "fsdp_version", "reshard_after_forward", "cpu_offload", "state_dict_type", "auto_wrap_policy",
        "activation_checkpointing", "transformer_cls_names_to_wrap", "mixed_precision_policy")}


@pytest.mark.parametrize("variant", ["fsdp", "fsdp-offload"])
def test_fsdp_is_the_same_under_accelerate_and_torchrun(tmp_path, monkeypatch, variant):
    """torchrun sets no accelerate environment: the Trainer must get the very FSDP settings the accelerate config
    carries (today's bug: torchrun + fsdp silently trained plain DDP)."""
    from accelerate.utils.launch import prepare_multi_gpu_env

    from hpc_finetune.train.core import sft_config

    prep, run_dir = rendered(tmp_path, VARIANTS[variant])
    args, _defaults = accelerate_args(prep, run_dir)
    env = prepare_multi_gpu_env(args)
    for key, value in env.items():
        if key.startswith("FSDP_") or key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    via_accelerate = plugin_view(fsdp_plugin(monkeypatch))
    for key in list(env):
        if key.startswith("FSDP_") or key.startswith("ACCELERATE_"):
            monkeypatch.delenv(key, raising=False)

    prep.cfg.launch.launcher = "torchrun"
    targs = sft_config(prep.cfg, tmp_path / "out", has_eval=False)
    assert targs.fsdp_plugin_args is not None, "torchrun + fsdp must hand FSDP to the Trainer"
    assert not targs.gradient_checkpointing  # FSDP's own activation checkpointing instead
    fsdp_args = dict(targs.fsdp_plugin_args)
    assert fsdp_args.pop("cpu_ram_efficient_loading") is True
    via_torchrun = plugin_view(fsdp_plugin(monkeypatch, **fsdp_args))
    assert via_torchrun == via_accelerate


@pytest.mark.parametrize("variant", [v for v in sorted(VARIANTS) if v.startswith("zero")])
def test_deepspeed_accepts_rendered_json(tmp_path, variant):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    prep, run_dir = rendered(tmp_path, VARIANTS[variant])
    ds = HfTrainerDeepSpeedConfig(str(run_dir / "deepspeed_config.json"))
    targs = TrainingArguments(output_dir=str(tmp_path / "o"), per_device_train_batch_size=4,
                              gradient_accumulation_steps=2, report_to="none", use_cpu=True)
    ds.trainer_config_process(targs)

    class TinyConfig:  # what trainer_config_finalize reads of a model for the remaining "auto" sizes
        hidden_size = 4096

    class Model:
        config = TinyConfig()

    ds.trainer_config_finalize(targs, Model(), num_training_steps=100)
    config = DeepSpeedConfig(ds.config)  # DeepSpeed's own validation (pydantic models, batch-size arithmetic)
    assert config.zero_optimization_stage == prep.cfg.launch.zero_stage
    assert config.train_micro_batch_size_per_gpu == 4 and config.gradient_accumulation_steps == 2
    offload = config.zero_config.offload_optimizer
    assert (offload is not None and str(offload.device).endswith("cpu")) == prep.cfg.launch.offload_optimizer
    if prep.cfg.launch.zero_stage == 3:
        assert config.zero_config.gather_16bit_weights_on_model_save is True
        param = config.zero_config.offload_param
        assert (param is not None and str(param.device).endswith("cpu")) == prep.cfg.launch.offload_params
    assert json.loads((run_dir / "deepspeed_config.json").read_text())["zero_optimization"]["stage"] == \
        prep.cfg.launch.zero_stage


def test_torchrun_command_parses_with_torchs_own_parser(tmp_path):
    from torch.distributed.run import get_args_parser

    prep, run_dir = rendered(tmp_path, "strategy: ddp, launcher: torchrun")
    program = NodeProgram(run_dir=str(run_dir), nodes=2, processes_per_node=4, gpus_per_node=4,
                          strategy="ddp", launcher="torchrun", python="python")
    info = NodeInfo(node_rank=1, num_nodes=2, hostname="gpu002", main_host="gpu001", main_addr="10.0.0.1",
                    port=21234, job_id="1234")
    argv = program.command(info)
    assert argv[:3] == ["python", "-m", "torch.distributed.run"]
    args = get_args_parser().parse_args(argv[3:])
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "4", 1)
    assert (args.master_addr, args.master_port) == ("10.0.0.1", 21234)
    assert args.module and args.training_script == "hpc_finetune.train"
    assert args.training_script_args == [str(run_dir / "run.yaml")]
