"""A real 3-node dev cluster for the cluster tests: `rade cluster up` on a temporary root with the busybox
image, shared by the tests of a module and always taken down after them, even when one fails.

Each test leaves no job running (the `cluster` fixture cancels what is left and waits for it), and after
the module nothing of the cluster may be left: no process, namespace, link, cgroup or container.
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
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.slices import node_slices
from agent.state import AgentState
from rade import devcluster

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL"}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the dev cluster needs root (network namespaces, cgroups, mounts)"
    if not shutil.which("busybox") and not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


class Cluster:
    """The running dev cluster, as tests drive it: the `rade` command and a few waits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir(exist_ok=True)

    def rade(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "rade", "--root", str(self.root), *args], cwd=REPO,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"rade {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def job_file(self, name: str = "job", **fields: Any) -> str:
        spec = {"name": name, "image": "busybox", "command": ["true"], "resources": {"cpus": 1, "memory": "64M"},
                **fields}
        path = self.files / f"{name}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return str(path)

    def submit(self, *extra: str, **fields: Any) -> int:
        out = self.rade("submit", self.job_file(**fields), *extra).stdout
        return int(out.split()[0])

    def submit_many(self, specs: list[dict[str, Any]]) -> list[int]:
        """Submit through the client library, many in flight: faster than a command per job."""
        from jobs.spec import JobSpec
        from rade.client import SchedulerClient, find_scheduler

        full = [JobSpec.from_dict({"image": "busybox", "resources": {"cpus": 1, "memory": "64M"}, **spec}).to_dict()
                for spec in specs]
        with SchedulerClient(find_scheduler(None, str(self.root)), root=str(self.root)) as client:
            return client.submit_many(full)

    def show(self, job: int) -> dict[str, Any]:
        return json.loads(self.rade("show", str(job), "--json").stdout)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in json.loads(self.rade("nodes", "--json").stdout)}

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def wait_state(self, job: int, states: set[str] | str, timeout: float = 60.0) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else states

        def check() -> dict[str, Any] | None:
            shown = self.show(job)
            return shown if shown["state"] in wanted else None
        return self.wait_for(f"job {job} to be {'/'.join(sorted(wanted))}", check, timeout)

    def wait_running(self, job: int, tasks: int = 1, timeout: float = 60.0) -> dict[str, Any]:
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
        """Cancel every job still alive and wait until no task runs and no container is left."""
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
            said = [line.strip() for log in (self.root / "cluster").glob("*.log") if log.name != "scheduler.log"
                    for line in log.read_text(errors="replace").splitlines() if cid[:12] in line]
            parts.append(f"{cid[:12]} {state.get('status', state)} {state.get('name', '')}; agent logs: {said[-8:]}")
        dead = [n.name for n in self.state().nodes if n.agent is None or not devcluster.is_alive(n.agent)]
        if dead:
            parts.append(f"agents not running: {dead}; their logs end: " + "; ".join(
                f"{name}: {(self.root / 'cluster' / f'{name}.log').read_text(errors='replace')[-1500:]!r}"
                for name in dead if (self.root / "cluster" / f"{name}.log").exists()))
        return " | ".join(parts)

    def agent_warnings(self) -> list[str]:
        return [line.strip() for log in (self.root / "cluster").glob("*.log") if log.name != "scheduler.log"
                for line in log.read_text(errors="replace").splitlines()
                if "outlived its task" in line or " ERROR " in line]


def leftovers(root: str, nodes: list[str], netns: list[str], links: list[str]) -> list[str]:
    """What of a dev cluster is still on the machine: its namespaces, links, task cgroups (of its nodes on
    its root: other clusters of this machine are not ours to check)."""
    found = [f"netns {name}" for name in netns if Path("/run/netns", name).exists()]
    found += [f"link {name}" for name in links if Path("/sys/class/net", name).exists()]
    for node in nodes:
        found += [f"cgroup {name}" for name in node_slices(root, node)]
    return found


@pytest.fixture(scope="module")
def live_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(root)
    try:
        cluster.rade("image", "bootstrap", "busybox", "busybox")
        devcluster.up(str(root), 3, labels={"node3": {"disk": "ssd"}}, timeout=60)
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


@pytest.fixture
def cluster(live_cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield live_cluster
    finally:
        live_cluster.quiesce()
