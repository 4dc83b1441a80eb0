"""A real dev cluster for tests, and what every test package that needs one drives it with.

`running_cluster(root, nodes)` brings a cluster up on a temporary root (`rade.devcluster.up`, with the
busybox image bootstrapped unless told otherwise), yields a `DevCluster` (or the caller's subclass of it),
and always takes it down, even when a test failed; then it fails naming whatever of the cluster is left on
the machine: a process (the scheduler, an agent, anything in a node's namespace), a namespace, a link, a
task cgroup, a container. `DevCluster` runs `rade` as a subprocess on that root, shows jobs and waits for
them by polling with a deadline (tests never sleep a fixed time), and cancels what a test left
(`quiesce`), saying what the agents logged of any container that does not go.

A subclass sets its own patience (`command_timeout`, `wait_timeout`, `poll_interval`) and what a timed-out
wait should add to its message (`timeout_context`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.slices import node_slices
from agent.state import AgentState
from jobs.states import TERMINAL_JOB_STATES
from rade import devcluster

REPO = Path(__file__).resolve().parents[1]
TERMINAL = frozenset(state.value for state in TERMINAL_JOB_STATES)


def skip_reason(busybox: bool = True) -> str | None:
    """Why a dev cluster cannot run here (None when it can); `busybox`: the tests need its image."""
    if os.geteuid() != 0:
        return "the dev cluster needs root (network namespaces, cgroups, mounts)"
    if busybox and not shutil.which("busybox") and not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


def run_rade(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`rade --root ROOT ARGS...` as a user runs it, from the repository; its exit code is the caller's."""
    return subprocess.run([sys.executable, "-m", "rade", "--root", str(root), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


class DevCluster:
    """The running dev cluster, as tests drive it: the `rade` command on its root and a few waits."""

    command_timeout: float = 120.0
    wait_timeout: float = 60.0
    poll_interval: float = 0.1

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"  # job files and inputs of the tests
        self.files.mkdir(exist_ok=True)

    def rade(self, *args: str, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        result = run_rade(self.root, *args, timeout=timeout or self.command_timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"rade {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def show(self, job: int) -> dict[str, Any]:
        return json.loads(self.rade("show", str(job), "--json").stdout)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in json.loads(self.rade("nodes", "--json").stdout)}

    def timeout_context(self) -> str:
        """What a timed-out wait adds to its message (nothing here)."""
        return ""

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float | None = None) -> Any:
        """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + (timeout or self.wait_timeout)
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}{self.timeout_context()}")
            time.sleep(self.poll_interval)

    def wait_state(self, job: int, states: set[str] | frozenset[str] | str,
                   timeout: float | None = None) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else states

        def check() -> dict[str, Any] | None:
            shown = self.show(job)
            return shown if shown["state"] in wanted else None
        return self.wait_for(f"job {job} to be {'/'.join(sorted(wanted))}", check, timeout)

    def wait_end(self, job: int, timeout: float | None = None) -> dict[str, Any]:
        return self.wait_state(job, TERMINAL, timeout)

    def wait_running(self, job: int, tasks: int = 1, timeout: float | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            shown = self.show(job)
            running = [t for t in shown["tasks"] if t["state"] == "RUNNING" and t["attempt"] == shown["attempt"]]
            return shown if len(running) == tasks else None
        return self.wait_for(f"{tasks} tasks of job {job} running", check, timeout)

    def state(self) -> devcluster.ClusterState:
        state = devcluster.load_state(str(self.root))
        assert state is not None
        return state

    def node(self, name: str) -> devcluster.NodeEntry:
        return next(n for n in self.state().nodes if n.name == name)

    def task_files(self, node: str) -> list:
        return AgentState(self.root, node).load_all()[0]

    def containers(self) -> list[str]:
        base = self.root / "containers"
        return sorted(p.name for p in base.iterdir() if len(p.name) == 64) if base.exists() else []

    def quiesce(self) -> None:
        """Cancel every job still alive, resume every node, and wait until no container is left."""
        queue = json.loads(self.rade("queue", "--all", "--json").stdout)
        alive = [str(j["id"]) for j in queue if j["state"] not in TERMINAL]
        if alive:
            self.rade("cancel", *alive, check=False)
        for name in [n.name for n in self.state().nodes]:
            self.rade("resume", name, check=False)
        try:
            self.wait_for("every container to be gone", lambda: not self.containers(), timeout=60)
        except AssertionError as err:
            raise AssertionError(f"{err}: {self.describe_leftovers()}") from None

    def describe_leftovers(self) -> str:
        """What the containers still here are, and what the agents' logs say of them: for a failure message."""
        parts = []
        for cid in self.containers():
            try:
                state = json.loads((self.root / "containers" / cid / "state.json").read_text())["container"]
            except (OSError, ValueError, KeyError) as err:
                state = {"unreadable": str(err)}
            said = [line for line in self._agent_log_lines() if cid[:12] in line]
            parts.append(f"{cid[:12]} {state.get('status', state)} {state.get('name', '')}; "
                         f"agent logs: {said[-8:]}")
        dead = [n.name for n in self.state().nodes if n.agent is None or not devcluster.is_alive(n.agent)]
        if dead:
            parts.append(f"agents not running: {dead}; their logs end: " + "; ".join(
                f"{name}: {(self.root / 'cluster' / f'{name}.log').read_text(errors='replace')[-1500:]!r}"
                for name in dead if (self.root / "cluster" / f"{name}.log").exists()))
        return " | ".join(parts)

    def agent_warnings(self) -> list[str]:
        """The agents' log lines that say something went wrong (an ERROR, a process outliving its task)."""
        return [line for line in self._agent_log_lines() if "outlived its task" in line or " ERROR " in line]

    def _agent_log_lines(self) -> list[str]:
        return [line.strip() for log in (self.root / "cluster").glob("*.log") if log.name != "scheduler.log"
                for line in log.read_text(errors="replace").splitlines()]


def leftovers(root: str, nodes: list[str], netns: list[str], links: list[str]) -> list[str]:
    """What of a dev cluster is still on the machine: its namespaces, links, task cgroups (of its nodes on
    its root: other clusters of this machine are not ours to check)."""
    found = [f"netns {name}" for name in netns if Path("/run/netns", name).exists()]
    found += [f"link {name}" for name in links if Path("/sys/class/net", name).exists()]
    for node in nodes:
        found += [f"cgroup {name}" for name in node_slices(root, node)]
    return found


Harness = TypeVar("Harness", bound=DevCluster)


@contextmanager
def running_cluster(root: Path, nodes: int, labels: dict[str, dict[str, str]] | None = None, *,
                    harness: Callable[[Path], Harness] = DevCluster, bootstrap: bool = True) -> Iterator[Harness]:
    """A dev cluster of `nodes` nodes on `root` (skipped where it cannot run), driven by `harness(root)`;
    `bootstrap`: put the busybox image in the root first. Taken down at the end even when a test failed,
    then fails naming what of it is left (process, namespace, link, cgroup, container)."""
    reason = skip_reason(busybox=bootstrap)
    if reason:
        pytest.skip(reason)
    cluster = harness(root)
    try:
        if bootstrap:
            cluster.rade("image", "bootstrap", "busybox", "busybox")
        devcluster.up(str(root), nodes, labels=labels, timeout=60)
        yield cluster
    finally:
        state = devcluster.load_state(str(root))
        procs = [p for p in ([state.scheduler] + [n.agent for n in state.nodes]) if p] if state else []
        netns = [n.netns for n in state.nodes] if state else []
        links = [n.host_link for n in state.nodes] + [state.bridge] if state else []
        namespaces = [devcluster.netns_inode(n) for n in netns]
        said = cluster.agent_warnings()
        if said:
            warnings.warn(f"the agents logged: {said[:10]}", stacklevel=1)
        devcluster.down(str(root))
        names = [n.name for n in state.nodes] if state else []
        left = leftovers(str(root), names, netns, links) + [f"process {p.pid}" for p in procs if devcluster.is_alive(p)]
        left += [f"process {pid} in a node's namespace" for ns in namespaces for pid in devcluster.processes_in(ns)]
        left += [f"container {c}" for c in cluster.containers()]
        assert not left, f"the cluster left {left}"
