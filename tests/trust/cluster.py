"""A dev cluster for the isolation tests and the soak: tests/devcluster_harness.py's cluster on a
temporary root with the busybox image, a directory every user may write (an allowed volume), and a second
user (`nobody`, a real uid) with its own key, so jobs run as someone who is not root. Always taken down,
and checked to leave nothing behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobs.keyfiles import read_key_file
from rade import devcluster
from rade.client import Credentials, SchedulerClient, find_scheduler

from ..devcluster_harness import TERMINAL, DevCluster, running_cluster

__all__ = ["TERMINAL", "USER", "TrustCluster", "trust_cluster"]

USER = "nobody"


class TrustCluster(DevCluster):
    """A running dev cluster, driven through the client library as `nobody` (or the admin, root)."""

    command_timeout = 300.0
    wait_timeout = 120.0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.shared = shared_dir(root)

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

    def log(self, job: int) -> str:
        """The job's output, stdout and stderr."""
        result = self.rade("logs", str(job))
        return result.stdout + result.stderr

    def cancel_all(self) -> None:
        with self.client(as_user=False) as client:
            alive = [j["id"] for j in client.queue(include_ended=True) if j["state"] not in TERMINAL]
            if alive:
                client.cancel(alive)
        for job in alive:
            self.wait_end(job, 60)


def shared_dir(root: Path) -> Path:
    """Beside the root, under /tmp: an allowed volume prefix of the dev cluster."""
    return root.parent / f"{root.name}-shared"


@contextmanager
def trust_cluster(root: Path, nodes: int) -> Iterator[TrustCluster]:
    """A dev cluster of `nodes` nodes on `root`, taken down at the end even when a test failed; fails the
    test if anything of it is left (process, namespace, link, cgroup, container)."""
    shared = shared_dir(root)
    shared.mkdir(mode=0o777, exist_ok=True)
    os.chmod(shared, 0o777)
    try:
        with running_cluster(root, nodes, harness=TrustCluster) as cluster:
            yield cluster
    finally:
        shutil.rmtree(shared, ignore_errors=True)
