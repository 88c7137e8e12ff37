"""The program each node runs inside the job (one task per node, started by srun or the local controller).

It reads its own node rank from the environment *at run time* (never from a value expanded once in the batch
script), agrees with the other nodes on the main address (first node of the allocation, resolved on the node) and
a port derived from the job id, and starts one launcher (accelerate, torchrun or plain python) for the node.
Login-light: no training library is imported here.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpc_finetune import devices, segments
from hpc_finetune.envvars import CACHE_VARS

PORT_BASE, PORT_SPAN = 20000, 20000


@dataclass
class NodeInfo:
    node_rank: int
    num_nodes: int
    hostname: str
    main_host: str
    main_addr: str
    port: int
    job_id: str


def port_for_job(job_id: str) -> int:
    """A port per job, so two jobs sharing a node never collide (ids 20,000 apart would; Slurm ids rarely are)."""
    digits = "".join(ch for ch in job_id if ch.isdigit()) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def slurm_hostnames(nodelist: str) -> list[str]:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    from submitit.slurm.slurm import _parse_node_list

    return _parse_node_list(nodelist)


def node_info(environ: Optional[dict] = None) -> NodeInfo:
    env = os.environ if environ is None else environ
    hostname = socket.gethostname()
    if "SLURM_JOB_ID" in env and env.get("SUBMITIT_EXECUTOR") != "local":
        job_id = env["SLURM_JOB_ID"]
        num_nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
        node_rank = int(env.get("SLURM_NODEID", 0))
        main_host = slurm_hostnames(env.get("SLURM_JOB_NODELIST", hostname))[0]
        main_addr = socket.gethostbyname(main_host)
        if num_nodes > 1 and main_addr.startswith("127."):
            raise RuntimeError(f"the first node {main_host} resolves to {main_addr} (loopback) on {hostname}; "
                               "other nodes cannot reach it. Fix /etc/hosts or DNS on the cluster.")
    else:
        job_id = env.get("SUBMITIT_LOCAL_JOB_ID", str(os.getpid()))
        num_nodes, node_rank, main_host, main_addr = 1, 0, hostname, "127.0.0.1"
    return NodeInfo(node_rank, num_nodes, hostname, main_host, main_addr, port_for_job(job_id), job_id)


def _ignore_checkpoint_signal() -> None:
    """Launchers (accelerate, torchrun's agent) would die on SIGUSR1/2; the trainer installs its own handler."""
    name = os.environ.get("HPCFT_CHECKPOINT_SIGNAL", "USR2")
    signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_IGN)


@dataclass
class NodeProgram:
    """Pickled by submitit at submit time; called once on every node of the job."""

    run_dir: str
    nodes: int
    processes_per_node: int
    gpus_per_node: int
    strategy: str = "ddp"
    launcher: str = "accelerate"
    python: str = ""
    output_dir: str = ""
    time_seconds: int = 0
    signal_seconds: int = 300
    max_requeues: int = 5

    def command(self, info: NodeInfo) -> list[str]:
        run_yaml = str(Path(self.run_dir) / "run.yaml")
        python = self.python or sys.executable
        world = self.nodes * self.processes_per_node
        if world == 1 and self.strategy == "ddp":
            return [python, "-m", "hpc_finetune.train", run_yaml]
        if self.launcher == "torchrun":
            return [python, "-m", "torch.distributed.run", f"--nnodes={self.nodes}",
                    f"--nproc-per-node={self.processes_per_node}", f"--node-rank={info.node_rank}",
                    f"--master-addr={info.main_addr}", f"--master-port={info.port}",
                    "-m", "hpc_finetune.train", run_yaml]
        return [python, "-m", "accelerate.commands.launch",
                "--config_file", str(Path(self.run_dir) / "accelerate_config.yaml"),
                "--num_machines", str(self.nodes), "--num_processes", str(world),
                "--machine_rank", str(info.node_rank), "--main_process_ip", info.main_addr,
                "--main_process_port", str(info.port), "-m", "hpc_finetune.train", run_yaml]

    def __call__(self) -> dict:
        info = self._info = node_info()
        for var in CACHE_VARS:
            if os.environ.get(var):
                os.makedirs(os.environ[var], exist_ok=True)  # node-local caches exist on every node
        env = dict(os.environ)
        env.update(HPCFT_NODE_RANK=str(info.node_rank), HPCFT_NUM_NODES=str(info.num_nodes),
                   HPCFT_MAIN_ADDR=info.main_addr, HPCFT_MAIN_PORT=str(info.port), HPCFT_JOB_ID=info.job_id)
        visible = devices.for_node(self.gpus_per_node, env.get(devices.VAR))
        if visible is not None:
            env[devices.VAR] = os.environ[devices.VAR] = visible  # also for this node's log line below
        cmd = self.command(info)
        print(f"hpc-finetune node: host={info.hostname} node_rank={info.node_rank}/{info.num_nodes} "
              f"main={info.main_host}({info.main_addr}):{info.port} job={info.job_id} "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
        print(f"hpc-finetune launch: {shlex.join(cmd)}", flush=True)
        started = self._started = time.time()
        self._event("start", info, step=segments.current_step(self._output()))
        # its own process group, so that the checkpoint signal can be forwarded to every trainer of this node
        self._proc = subprocess.Popen(cmd, env=env, preexec_fn=_ignore_checkpoint_signal, start_new_session=True)
        rc = self._proc.wait()
        if rc != 0:
            self._event("trainer exited", info, returncode=rc, step=segments.current_step(self._output()))
            raise RuntimeError(f"training on {info.hostname} exited with status {rc}")
        out = self._output()
        interrupted = (out / "interrupted.json").exists() and not (out / "summary.json").exists()
        self._event("checkpointed" if interrupted else "completed", info, step=segments.current_step(out))
        return {"node_rank": info.node_rank, "returncode": rc, "seconds": round(time.time() - started, 1)}

    def _output(self) -> Path:
        return Path(self.output_dir or Path(self.run_dir) / "output")

    def _event(self, event: str, info: NodeInfo, **extra: object) -> None:
        """RUN_DIR/attempts.jsonl: how each job segment starts and ends (node 0 only), for `status`."""
        if info.node_rank == 0:
            segments.log_event(self.run_dir, event, **extra)

    def checkpoint(self, *args: object, **kwargs: object) -> object:
        """Called by submitit on the checkpoint signal (time limit or preemption) in node 0's task.

        Forwards the signal to this node's trainers, waits until they saved a complete checkpoint and exited, and
        hands submitit the same program to requeue: the next segment resumes from that checkpoint.
        """
        import submitit

        proc = getattr(self, "_proc", None)
        name = os.environ.get("HPCFT_CHECKPOINT_SIGNAL", "USR2")
        info = getattr(self, "_info", None) or node_info()
        elapsed = time.time() - getattr(self, "_started", time.time())
        reason = segments.signal_reason(elapsed, self.time_seconds, self.signal_seconds) if self.time_seconds \
            else "signal"
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, getattr(signal, f"SIG{name}"))
            except ProcessLookupError:
                pass
            # Not proc.wait(): the interrupted main thread holds Popen's wait lock. Reap the child directly.
            deadline = time.time() + float(os.environ.get("HPCFT_SAVE_TIMEOUT", "600"))
            while time.time() < deadline:
                try:
                    pid, _status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    break
                time.sleep(0.2)
        step = segments.current_step(self._output())
        stop = segments.requeue_allowed(segments.read_events(self.run_dir), info.job_id, self.max_requeues)
        if stop:
            self._event("stopped", info, reason=f"{reason}; {stop}", step=step)
            return None  # submitit ends the job instead of requeuing it
        self._event("requeued", info, reason=reason, step=step)
        return submitit.helpers.DelayedSubmission(self)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_info", "_started")}
