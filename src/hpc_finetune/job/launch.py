"""The program each node runs inside the job (one task per node, started by srun or the local controller).

It reads its own node rank from the environment *at run time* (never from a value expanded once in the batch
script), agrees with the other nodes on the main address (first node of the allocation, resolved on the node) and
a port derived from the job id, and starts one launcher (accelerate, torchrun or plain python) for the node.
Login-light: no training library is imported here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpc_finetune import devices, layout
from hpc_finetune.envvars import CACHE_VARS, SIGNAL_DIR
from hpc_finetune.job import segments
from hpc_finetune.job import signals as trainer_signals
from hpc_finetune.job.launchplan import LaunchPlan, plan_launch
from hpc_finetune.states import Event

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
    from hpc_finetune.submitit_api import parse_node_list

    return parse_node_list(nodelist)


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


def _ignoring(signums: tuple[int, ...]):
    """preexec_fn for the launcher (accelerate, torchrun's agent, or the trainer itself before its first line):
    ignore the checkpoint signals. The trainers install their own handler first thing (job/signals.py); a launcher
    must not die of them, nor answer SIGTERM by killing its workers in the middle of their save. (Only signal()
    calls here: nothing that could take a lock between fork and exec.)"""
    def preexec() -> None:
        for signum in signums:
            signal.signal(signum, signal.SIG_IGN)
    return preexec


def _is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor`` or below it in the process tree (guards against a recycled pid)."""
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return not os.path.isdir("/proc/self")  # no /proc (not Linux): trust the registration
        if pid <= 1:
            return False
    return False


@dataclass
class NodeProgram:
    """Pickled by submitit at submit time; called once on every node of the job.

    Its fields are the pickled contract with jobs already queued (an older version's pickle must still run): the
    launch itself is derived from them by the same rule the job spec used (``launch_plan``, job/launchplan.py).
    ``gpus_per_node`` sets the node's visible devices (devices.for_node)."""

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

    def launch_plan(self) -> LaunchPlan:
        return plan_launch(run_dir=self.run_dir, nodes=self.nodes, processes_per_node=self.processes_per_node,
                           strategy=self.strategy, launcher=self.launcher)

    def command(self, info: NodeInfo) -> list[str]:
        return self.launch_plan().command(self.python or sys.executable, node_rank=info.node_rank,
                                          main_addr=info.main_addr, port=info.port)

    def __call__(self) -> dict:
        info = self._info = node_info()
        for var in CACHE_VARS:
            if os.environ.get(var):
                os.makedirs(os.environ[var], exist_ok=True)  # node-local caches exist on every node
        env = dict(os.environ)
        visible = devices.for_node(self.gpus_per_node, env.get(devices.VAR))
        if visible is not None:
            env[devices.VAR] = os.environ[devices.VAR] = visible  # also for this node's log line below
        cmd = self.command(info)
        print(f"hpc-finetune node: host={info.hostname} node_rank={info.node_rank}/{info.num_nodes} "
              f"main={info.main_host}({info.main_addr}):{info.port} job={info.job_id} "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
        print(f"hpc-finetune launch: {shlex.join(cmd)}", flush=True)
        started = self._started = time.time()
        self._event(Event.START, info, step=segments.current_step(self._output()))
        self._begin_signals(info)
        try:
            # its own session: torch elastic's workers are in sessions of their own anyway, so signals reach the
            # trainers by the pids they registered (see _forward), not by process group
            self._proc = subprocess.Popen(cmd, env={**env, **self.launch_plan().env, SIGNAL_DIR: self._signal_dir},
                                          preexec_fn=_ignoring(tuple(trainer_signals.checkpoint_signals())),
                                          start_new_session=True)
            rc = self._proc.wait()
        finally:
            shutil.rmtree(self._signal_dir, ignore_errors=True)
        out = self._output()
        if rc != 0:
            self._event(Event.TRAINER_EXITED, info, returncode=rc, step=segments.current_step(out))
            raise RuntimeError(f"training on {info.hostname} exited with status {rc}")
        interrupted = (out / "interrupted.json").exists() and not (out / "summary.json").exists()
        self._event(Event.CHECKPOINTED if interrupted else Event.COMPLETED, info, step=segments.current_step(out))
        return {"node_rank": info.node_rank, "returncode": rc, "seconds": round(time.time() - started, 1)}

    # --- checkpoint signals: the profile's warning signal (time limit; preemption where the site sends it) and
    # SIGTERM (Slurm's preemption with a GraceTime; also scancel, the time limit's kill, a node's shutdown)

    def _begin_signals(self, info: NodeInfo) -> None:
        """Catch the checkpoint signals in this node program, on every node, before the launcher starts; submitit's
        own handlers (node 0: checkpoint() and requeue on the warning signal; SIGTERM: only logged) are chained."""
        self._signal_dir = tempfile.mkdtemp(prefix=f"hpcft-signals-{info.job_id}-{info.node_rank}-")
        self._signalled: Optional[tuple[int, float]] = None
        self._handling = False
        self._submitit_handlers = {}
        for signum in trainer_signals.checkpoint_signals():
            self._submitit_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._signalled is None:
            self._signalled = (signum, time.time())
            try:
                trainer_signals.request_stop(self._signal_dir, signal.Signals(signum).name)
            except OSError:
                pass
        self._forward(signum)
        if self._handling:
            return  # a second signal while the first is handled (SIGCONT+SIGTERM at the end of a grace time)
        self._handling = True
        warning = trainer_signals.checkpoint_signals()[0]
        if signum == warning:
            chained = self._submitit_handlers.get(warning)
            if callable(chained):
                chained(signum, frame)  # node 0: checkpoint() below, then requeue (or stop) and exit
            return
        self._on_sigterm(signum, frame)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        """SIGTERM: the trainers save in any case (they got it too). Node 0 tells a preemption, which requeues the job
        like the warning signal does (once: see segments.after_failure), from a SIGTERM that must not requeue."""
        info = self._info
        if info.node_rank != 0 or os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
            if info.node_rank == 0:
                self._event(Event.TERMINATED, info, reason="SIGTERM outside Slurm: saving, not requeued",
                            step=segments.current_step(self._output()))
            return
        job = segments.slurm_job(info.job_id)
        cause = segments.term_cause(job)
        if cause == "preempted":
            self._job = job
            chained = self._submitit_handlers.get(trainer_signals.checkpoint_signals()[0])
            if callable(chained):
                chained(signum, frame)  # submitit: checkpoint() below, dump, `scontrol requeue`, exit
            return
        why = {"ended": f"the job is {job.get('JobState', '?')} (scancel, the time limit, or a requeue by hand)",
               "not Slurm": "not from Slurm (the job runs and nothing preempts it: a shutdown or a kill by hand)",
               "unknown": "Slurm did not answer"}[cause]
        self._event(Event.TERMINATED, info, reason=f"SIGTERM: {why}; saving if there is time, not requeued",
                    step=segments.current_step(self._output()))

    def _forward(self, signum: int) -> None:
        """Signal every trainer of this node that registered under this node program (not the launcher, which ignores
        it, nor helper processes such as data loader workers or wandb's service, which must not die of it)."""
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        for pid in trainer_signals.registered_trainers(self._signal_dir):
            if _is_descendant(pid, proc.pid):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def _wait_for_trainers(self, proc: subprocess.Popen, deadline: float) -> bool:
        """Reap the launcher if it exits before ``deadline``. Not proc.wait(): the interrupted main thread holds
        Popen's wait lock."""
        while time.time() < deadline:
            try:
                pid, _status = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid:
                return True
            time.sleep(0.2)
        return False

    def _output(self) -> Path:
        return Path(self.output_dir) if self.output_dir else layout.default_output_dir(self.run_dir)

    def _event(self, event: Event, info: NodeInfo, **extra: object) -> None:
        """RUN_DIR/attempts.jsonl: how each job segment starts and ends (node 0 only), for `status`."""
        if info.node_rank == 0:
            segments.log_event(self.run_dir, event, **extra)

    def checkpoint(self, *args: object, **kwargs: object) -> object:
        """Called by submitit in node 0's task on the warning signal, and by _on_sigterm on a preemption's SIGTERM.

        The trainers of every node already have the signal (_on_signal forwarded it on each node; the ranks agree at
        each step). Waits until they saved and exited, but only as long as the time left allows (segments.
        save_deadline), then hands submitit the same program to requeue, saved or not: the next segment resumes
        from the newest complete checkpoint.
        """
        import submitit

        proc = getattr(self, "_proc", None)
        info = getattr(self, "_info", None) or node_info()
        signalled = getattr(self, "_signalled", None)
        if signalled is None:  # submitit called us without our handler (a signal before __call__ installed it)
            signalled = (trainer_signals.checkpoint_signals()[0], time.time())
        signum, signal_at = signalled
        slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
        job = getattr(self, "_job", None) or (segments.slurm_job(info.job_id) if slurm else {})
        if signum == signal.SIGTERM:
            reason = "preempted (SIGTERM)"
        elif segments.term_cause(job) == "preempted":
            reason = "preempted"
        elif self.time_seconds:
            elapsed = signal_at - getattr(self, "_started", signal_at)
            reason = segments.signal_reason(elapsed, self.time_seconds, self.signal_seconds)
        else:
            reason = "signal"
        saved = True
        if proc is not None and proc.poll() is None:
            if getattr(self, "_signalled", None) is None:
                self._forward(signum)
            deadline = segments.save_deadline(signal_at, self.signal_seconds, segments.slurm_time(job.get("EndTime")))
            saved = self._wait_for_trainers(proc, deadline)
        step = segments.current_step(self._output())
        if not saved:
            reason += "; the save did not finish in the time left, resuming from the last complete checkpoint"
        stop = segments.requeue_allowed(segments.read_events(self.run_dir), info.job_id, self.max_requeues)
        if stop:
            self._event(Event.STOPPED, info, reason=f"{reason}; {stop}", step=step)
            return None  # submitit ends the job instead of requeuing it
        self._event(Event.REQUEUED, info, reason=reason, step=step)
        return submitit.helpers.DelayedSubmission(self)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
