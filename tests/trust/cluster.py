"""A dev cluster for the isolation tests and the soak: `rade.devcluster` on a temporary root with the
busybox image, and a second user (`nobody`, a real uid) with its own key, so jobs run as someone who is
not root. Always taken down, and checked to leave nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jobs.keyfiles import read_key_file
from rade import devcluster
from rade.client import Credentials, SchedulerClient, find_scheduler

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL"}
USER = "nobody"


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the dev cluster needs root (network namespaces, cgroups, mounts)"
    if not shutil.which("busybox") and not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


class TrustCluster:
    """A running dev cluster, driven through the client library as `nobody` (or the admin, root)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shared = root.parent / f"{root.name}-shared"  # under /tmp, an allowed volume prefix

    def rade(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "rade", "--root", str(self.root), *args], cwd=REPO,
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"rade {' '.join(args)}: {result.stderr}"
        return result

    def user_credentials(self) -> Credentials:
        from rade.commands.keys import issue_user_key

        keys = devcluster.key_dir(str(self.root))
        path = self.root / f"{USER}.key"
        if not path.exists():
            issue_user_key(keys, USER, str(path))
        key = read_key_file(path, secret=True)
        assert key.secret is not None
        return Credentials(key.public, key.secret, key.metadata["scheduler-key"], str(path))

    def client(self, as_user: bool = True, timeout: float = 30.0) -> SchedulerClient:
        endpoint = find_scheduler(None, str(self.root))
        if as_user:
            return SchedulerClient(endpoint, timeout=timeout, credentials=self.user_credentials())
        return SchedulerClient(endpoint, timeout=timeout, root=str(self.root))

    def submit(self, command: str, name: str = "probe", as_user: bool = True, **fields: Any) -> int:
        spec = {"name": name, "image": "busybox", "command": ["sh", "-c", command],
                "resources": {"cpus": 1, "memory": "64M"}, **fields}
        with self.client(as_user) as client:
            (job,) = client.submit(spec)
        return job

    def show(self, job: int) -> dict[str, Any]:
        with self.client(as_user=False) as client:
            return client.show(job)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def wait_state(self, job: int, states: set[str], timeout: float = 120.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            shown = self.show(job)
            return shown if shown["state"] in states else None
        return self.wait_for(f"job {job} in {sorted(states)}", check, timeout)

    def wait_end(self, job: int, timeout: float = 120.0) -> dict[str, Any]:
        return self.wait_state(job, TERMINAL, timeout)

    def log(self, job: int) -> str:
        """The job's output, stdout and stderr."""
        result = self.rade("logs", str(job))
        return result.stdout + result.stderr

    def state(self) -> devcluster.ClusterState:
        state = devcluster.load_state(str(self.root))
        assert state is not None
        return state

    def cancel_all(self) -> None:
        with self.client(as_user=False) as client:
            alive = [j["id"] for j in client.queue(include_ended=True) if j["state"] not in TERMINAL]
            if alive:
                client.cancel(alive)
        for job in alive:
            self.wait_end(job, 60)


@contextmanager
def trust_cluster(root: Path, nodes: int) -> Iterator[TrustCluster]:
    """A dev cluster of `nodes` nodes on `root`, taken down at the end even when a test failed; fails the
    test if anything of it is left (process, namespace, link, cgroup, container)."""
    from agent.tasks import node_slices

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = TrustCluster(root)
    cluster.shared.mkdir(mode=0o777, exist_ok=True)
    os.chmod(cluster.shared, 0o777)
    try:
        cluster.rade("image", "bootstrap", "busybox", "busybox")
        devcluster.up(str(root), nodes, timeout=60)
        yield cluster
    finally:
        state = devcluster.load_state(str(root))
        devcluster.down(str(root))
        left: list[str] = []
        if state is not None:
            procs = [p for p in [state.scheduler] + [n.agent for n in state.nodes] if p]
            left += [f"process {p.pid}" for p in procs if devcluster.is_alive(p)]
            left += [f"netns {n.netns}" for n in state.nodes if Path("/run/netns", n.netns).exists()]
            left += [f"cgroup {s}" for n in state.nodes for s in node_slices(str(root), n.name)]
        containers = root / "containers"
        left += [f"container {p.name}" for p in containers.iterdir() if len(p.name) == 64] if containers.exists() else []
        shutil.rmtree(cluster.shared, ignore_errors=True)
        assert not left, f"the cluster left {left}"
