"""A real 3-node dev cluster for the cluster tests: `rade cluster up` on a temporary root with the busybox
image, shared by the tests of a module and always taken down after them, even when one fails.

Each test leaves no job running (the `cluster` fixture cancels what is left and waits for it), and after
the module nothing of the cluster may be left: no process, namespace, link, cgroup or container (see
tests/devcluster_harness.py, which the trust and soak tests share).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ..devcluster_harness import REPO, TERMINAL, DevCluster, leftovers, running_cluster

__all__ = ["REPO", "TERMINAL", "Cluster", "leftovers"]


class Cluster(DevCluster):
    """The running dev cluster, as the cluster tests drive it: busybox jobs by command or client library."""

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


@pytest.fixture(scope="module")
def live_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), 3, labels={"node3": {"disk": "ssd"}},
                         harness=Cluster) as cluster:
        yield cluster


@pytest.fixture
def cluster(live_cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield live_cluster
    finally:
        live_cluster.quiesce()
