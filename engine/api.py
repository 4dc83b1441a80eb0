"""The engine as a Python API, for the node agent and other programs that run containers without the
command line: create, start, wait, kill, stop, pause and unpause, stats, exec, remove, the log path, and
adopting the containers that still run after the caller restarted (their supervisors outlive it).

A thin face over `engine.containers.lifecycle`, in plain arguments: a container's cgroup parent and
cpuset/memory limits, its environment (`rade_env` makes the RADE_* variables a job sees), host network,
a given name. A caller with threads (ZeroMQ's) passes `threaded=True` (the default) so that nothing is
forked from its own image: supervisors start through a fresh interpreter and exec through the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.containers import lifecycle
from engine.containers.record import ContainerRecord, Resources
from engine.containers.status import is_active
from engine.containers.store import ContainerStore
from engine.errors import ContainerError


def rade_env(job_id: int, job_name: str, task_id: int, node: str, nodelist: Sequence[str],
             hostfile: str | None = None) -> dict[str, str]:
    """The RADE_* variables a cluster job sees inside its containers."""
    env = {"RADE_JOB_ID": str(job_id), "RADE_JOB_NAME": job_name, "RADE_TASK_ID": str(task_id),
           "RADE_NODE": node, "RADE_NODELIST": ",".join(nodelist)}
    if hostfile:
        env["RADE_HOSTFILE"] = hostfile
    return env


@dataclass(frozen=True, slots=True)
class Started:
    """A started container: its record (pid, name...) as of the start."""

    record: ContainerRecord

    @property
    def id(self) -> str:
        return self.record.id


class Engine:
    """Containers under one state root."""

    def __init__(self, root: str | os.PathLike[str], threaded: bool = True) -> None:
        self.root = str(root)
        self.store = ContainerStore(self.root)
        self.threaded = threaded

    def create(self, image: str, command: Sequence[str] = (), *, name: str | None = None,
               env: Mapping[str, str] | None = None, volumes: Sequence[str] = (), network: str = "host",
               cpus: float | None = None, memory: int | None = None, cpuset_cpus: str | None = None,
               cpuset_mems: str | None = None, pids_limit: int | None = None, cgroup_parent: str | None = None,
               workdir: str | None = None, user: str | None = None, hostname: str | None = None,
               capabilities: bool = False, labels: Mapping[str, str] | None = None) -> ContainerRecord:
        """A created container. `capabilities=False` (the default here) drops every capability, as a
        cluster job gets; True gives Docker's default set."""
        opts = lifecycle.CreateOptions(
            image=image, command=tuple(command), name=name,
            env=tuple(f"{k}={v}" for k, v in (env or {}).items()), volumes=tuple(volumes), network=network,
            resources=Resources(cpus=cpus, memory=memory, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                                pids_limit=pids_limit, cgroup_parent=cgroup_parent),
            workdir=workdir, user=user, hostname=hostname, default_capabilities=capabilities,
            labels=tuple((labels or {}).items()))
        return lifecycle.create(self.store, opts)

    def start(self, container_id: str) -> Started:
        """Start it and return once its command runs; the launch's error (127, 126, 125) otherwise."""
        reader = lifecycle.start(self.store, self.store.find(container_id), threaded_caller=self.threaded)
        try:
            message = reader.until_started()
        finally:
            reader.close()
        if message.get("state") == "error":
            err = ContainerError(message.get("message", "start failed"), message.get("hint"))
            err.exit_code = int(message.get("exit_code", 125))
            raise err
        return Started(self.store.find(container_id))

    def run(self, image: str, command: Sequence[str] = (), **options) -> Started:
        """create + start."""
        return self.start(self.create(image, command, **options).id)

    def inspect(self, container_id: str) -> ContainerRecord:
        return lifecycle.refresh(self.store, self.store.find(container_id))

    def wait(self, container_id: str, timeout: float | None = None) -> ContainerRecord:
        """Block until it has exited and been cleaned up (or `timeout`); its record (exit_code, oom_killed)."""
        return lifecycle.wait(self.store, self.store.find(container_id), timeout)

    def kill(self, container_id: str, signum: int = signal.SIGKILL) -> None:
        lifecycle.signal_container(self.store, self.store.find(container_id), signum)

    def stop(self, container_id: str, timeout: float = 10.0) -> ContainerRecord:
        return lifecycle.stop(self.store, self.store.find(container_id), timeout)

    def pause(self, container_id: str) -> ContainerRecord:
        """Freeze every process of the running container (the cgroup freezer) until `unpause`."""
        from engine.containers.pause import pause

        return pause(self.store, self.store.find(container_id))

    def unpause(self, container_id: str) -> ContainerRecord:
        from engine.containers.pause import unpause

        return unpause(self.store, self.store.find(container_id))

    def stats(self, container_id: str):
        """CPU seconds, memory now and at peak, and tasks of a running container (a CgroupStats)."""
        from engine.cgroups import open_cgroup
        from engine.cgroups.driver import DEFAULT_PARENT

        record = self.inspect(container_id)
        if not is_active(record.status):
            raise ContainerError(f"container {record.name} is not running", "stats exist while it runs")
        return open_cgroup(record.id, record.host_config.resources.cgroup_parent or DEFAULT_PARENT).stats()

    def exec(self, container_id: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None) -> int:
        """Run `argv` in the running container, wait, and return its exit status."""
        record = self.store.find(container_id)
        extra = tuple(f"{k}={v}" for k, v in (env or {}).items())
        if not self.threaded:
            from engine.containers.execute import exec_in

            return exec_in(self.store, record, tuple(argv), interactive=stdin is not None, env=extra)
        cmd = [sys.executable, "-m", "rade", "--root", self.root, "exec"]
        cmd += ["-i"] if stdin is not None else []
        for item in extra:
            cmd += ["-e", item]
        cmd += [record.id, *argv]
        done = subprocess.run(cmd, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=stdout,
                              stderr=stderr, cwd=str(Path(__file__).resolve().parents[1]), check=False)
        return done.returncode

    def remove(self, container_id: str, force: bool = False) -> None:
        lifecycle.remove(self.store, self.store.find(container_id), force=force, volumes=True)

    def log_path(self, container_id: str) -> Path:
        """The container's log file (CRI format; read it with engine.containers.logs.read)."""
        return self.store.dir(self.store.find(container_id).id).log

    def running(self) -> list[ContainerRecord]:
        """Every container still running, as found after a restart of the caller; records of ones whose
        supervisor died meanwhile are corrected (and those left out)."""
        out = []
        for record in self.store.all():
            record = lifecycle.refresh(self.store, record)
            if is_active(record.status):
                out.append(record)
        return out

    def adopt(self, labels: Mapping[str, str] | None = None) -> list[ContainerRecord]:
        """The running containers whose labels include `labels`: the ones a restarted caller takes back."""
        wanted = dict(labels or {})
        return [r for r in self.running() if all(dict(r.config.labels).get(k) == v for k, v in wanted.items())]
