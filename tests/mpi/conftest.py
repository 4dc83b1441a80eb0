"""Fixtures of the MPI tests: the `mpi:bookworm` image built once into a cached root, and a real 2-node dev
cluster that uses it, taken down after the module even when a test fails.

Building the image (debootstrap, then apt in the image) takes minutes, so it is built into a root kept
between sessions (`RADE_TEST_MPI_ROOT`, default /var/tmp/rade-test-mpi) under a lock; a session whose
image is already there pays only the build cache's check. The cluster's own root is a temporary directory
whose image store is that root's (a symlink), so nothing of a test run is left in the cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..devcluster_harness import DevCluster, run_rade, running_cluster, skip_reason

IMAGE = "mpi:bookworm"
MPICH_IMAGE = "mpi:bookworm-mpich"
BUILD_TIMEOUT = 1800


def _skip_reason() -> str | None:
    reason = skip_reason(busybox=False)
    if reason:
        return reason
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (Debian: debootstrap)"
    return None


@pytest.fixture(scope="session")
def mpi_image_root() -> Path:
    """A root holding `mpi:bookworm`, built from examples/mpi on first use and cached."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(os.environ.get("RADE_TEST_MPI_ROOT", "/var/tmp/rade-test-mpi"))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once build it once
        for args in (("image", "bootstrap", "debian:bookworm", "debian:bookworm"),
                     ("build", "-t", IMAGE, "examples/mpi")):
            result = run_rade(root, *args, timeout=BUILD_TIMEOUT)
            if result.returncode != 0:
                pytest.fail(f"rade {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return root


@pytest.fixture(scope="session")
def mpich_image(mpi_image_root: Path) -> str:
    """The MPICH variant, built into the same cached root (on top of the same Debian base)."""
    with open(mpi_image_root / ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        args = ("build", "-t", MPICH_IMAGE, "-f", "examples/mpi/Containerfile.mpich", "examples/mpi")
        result = run_rade(mpi_image_root, *args, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"rade {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return MPICH_IMAGE


class MpiCluster(DevCluster):
    """The running 2-node cluster, as the tests drive it."""

    wait_timeout = 120.0
    poll_interval = 0.2

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.jobs: list[int] = []

    def submit(self, command: list[str], ranks: int = 4, per_node: int = 2, **fields: Any) -> int:
        spec = {"name": "mpi-test", "image": IMAGE, "command": command, "volumes": [f"{self.files}:/files:ro"],
                "resources": {"cpus": 1, "memory": "256M"}, "mpi": {"ranks": ranks, "ranks_per_node": per_node},
                "time_limit": "5m", **fields}
        path = self.files / f"job-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(spec))
        job = int(self.rade("submit", str(path)).stdout.split()[0])
        self.jobs.append(job)
        return job

    def logs(self, job: int) -> str:
        return self.rade("logs", str(job)).stdout

    def timeout_context(self) -> str:
        return f"; the queue:\n{self.rade('queue', '--all', check=False).stdout}"

    def wait_ended(self, job: int, timeout: float = 180.0) -> dict[str, Any]:
        return self.wait_end(job, timeout)


@pytest.fixture
def job_processes() -> Callable[[int], dict[int, dict[str, str]]]:
    return processes_of_job


def processes_of_job(job: int) -> dict[int, dict[str, str]]:
    """The host's processes of a job's containers: pid -> their environment (RADE_JOB_ID tells them)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if b"=" in item)
        if env.get(b"RADE_JOB_ID") == str(job).encode():
            found[int(entry.name)] = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in env.items()}
    return found


@pytest.fixture(scope="module")
def live_mpi_cluster(mpi_image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MpiCluster]:
    root = tmp_path_factory.mktemp("mpi-cluster")
    (root / "images").symlink_to(mpi_image_root / "images")
    with running_cluster(root, 2, harness=MpiCluster, bootstrap=False) as cluster:
        yield cluster


@pytest.fixture
def mpi_cluster(live_mpi_cluster: MpiCluster) -> Iterator[MpiCluster]:
    try:
        yield live_mpi_cluster
    finally:
        live_mpi_cluster.quiesce()
