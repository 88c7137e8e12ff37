"""Parsing what Slurm prints about partitions and nodes (recorded output of real sites' formats)."""

from __future__ import annotations

from hpc_finetune.livecheck import parse, parse_gres, request_problems

SCONTROL = (
    "PartitionName=gpu AllowGroups=ALL Default=NO MaxNodes=4 MaxTime=2-00:00:00 State=UP TotalCPUs=256 "
    "TotalNodes=4 Nodes=g[001-004]\n"
    "PartitionName=cpu AllowGroups=ALL Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED State=UP TotalNodes=2 "
    "Nodes=c[01-02]\n"
    "PartitionName=old Default=NO MaxNodes=1 MaxTime=30:00 State=DRAIN TotalNodes=1 Nodes=o1\n")
SINFO = ("gpu|g001|64|512000|gpu:a100:4(S:0-1)\ngpu|g002|64|512000|gpu:a100:4(S:0-1)\n"
         "cpu*|c01|128|256000|(null)\nold|o1|8|16000|gpu:2\n")


def test_gres_forms():
    assert parse_gres("gpu:a100:4(S:0-1)") == {"a100": 4}
    assert parse_gres("gpu:4") == {"": 4}
    assert parse_gres("gpu:a100:2,gpu:v100:2,shard:8") == {"a100": 2, "v100": 2}
    assert parse_gres("(null)") == {}


def test_request_against_partitions():
    parts = parse(SCONTROL, SINFO)
    assert parts["gpu"].max_seconds == 2 * 86400 and parts["gpu"].gpus_per_node == 4
    assert parts["cpu"].default and parts["cpu"].max_nodes is None and parts["cpu"].max_seconds is None
    problems = []
    add = lambda field, msg: problems.append((field, msg))  # noqa: E731
    part = request_problems(parts, partition="gpu", nodes=5, gpus=8, gpu_type="h100", seconds=3 * 86400, cpus=256,
                            mem="600G", add=add)
    assert part.name == "gpu"
    fields = [f.split(" ")[0] for f, _ in problems]
    assert fields == ["resources.nodes", "resources.time", "resources.gpus_per_node", "gpu_type", "cpus_per_gpu",
                      "mem_per_gpu"]
    problems.clear()
    assert request_problems(parts, partition=None, nodes=1, gpus=1, gpu_type=None, seconds=60, cpus=4, mem="1G",
                            add=add).name == "cpu"
    assert problems == [("resources.gpus_per_node (--gpus)", "partition 'cpu' has no GPUs (no gpu GRES on its "
                                                             "nodes); use --gpus 0 or a GPU partition")]
    problems.clear()
    request_problems(parts, partition="old", nodes=1, gpus=0, gpu_type=None, seconds=60, cpus=1, mem="1G", add=add)
    assert problems and "DRAIN" in problems[0][1]
