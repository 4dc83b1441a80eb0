"""Fixtures of the MPI tests: the `mpi:bookworm` image built once into a cached root, and a real 2-node dev
cluster that uses it, taken down after the module even when a test fails.

Building the image (debootstrap, then apt in the image) takes minutes, so it is built into a root kept
between sessions (`RADE_TEST_MPI_ROOT`, default /var/tmp/rade-test-mpi) under a lock; a session whose
image is already there pays only the build cache's check. The cluster's own root is a temporary directory
whose image store is that root's (a symlink), so nothing of a test run is left in the cache.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.tasks import SLICE_PARENT, slice_prefix
from rade import devcluster

REPO = Path(__file__).resolve().parents[2]
IMAGE = "mpi:bookworm"
MPICH_IMAGE = "mpi:bookworm-mpich"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL"}
BUILD_TIMEOUT = 1800


def rade(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rade", "--root", str(root), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the dev cluster needs root (network namespaces, cgroups, mounts)"
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
            result = rade(root, *args, timeout=BUILD_TIMEOUT)
            if result.returncode != 0:
                pytest.fail(f"rade {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return root


@pytest.fixture(scope="session")
def mpich_image(mpi_image_root: Path) -> str:
    """The MPICH variant, built into the same cached root (on top of the same Debian base)."""
    with open(mpi_image_root / ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        args = ("build", "-t", MPICH_IMAGE, "-f", "examples/mpi/Containerfile.mpich", "examples/mpi")
        result = rade(mpi_image_root, *args, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"rade {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return MPICH_IMAGE


class MpiCluster:
    """The running 2-node cluster, as the tests drive it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir(exist_ok=True)
        self.jobs: list[int] = []

    def rade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = rade(self.root, *args)
        if check and result.returncode != 0:
            raise AssertionError(f"rade {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def submit(self, command: list[str], ranks: int = 4, per_node: int = 2, **fields: Any) -> int:
        spec = {"name": "mpi-test", "image": IMAGE, "command": command, "volumes": [f"{self.files}:/files:ro"],
                "resources": {"cpus": 1, "memory": "256M"}, "mpi": {"ranks": ranks, "ranks_per_node": per_node},
                "time_limit": "5m", **fields}
        path = self.files / f"job-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(spec))
        job = int(self.rade("submit", str(path)).stdout.split()[0])
        self.jobs.append(job)
        return job

    def show(self, job: int) -> dict[str, Any]:
        return json.loads(self.rade("show", str(job), "--json").stdout)

    def logs(self, job: int) -> str:
        return self.rade("logs", str(job)).stdout

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                queue = self.rade("queue", "--all", check=False).stdout
                raise AssertionError(f"timed out waiting for {what}; the queue:\n{queue}")
            time.sleep(0.2)

    def wait_ended(self, job: int, timeout: float = 180.0) -> dict[str, Any]:
        return self.wait_for(f"job {job} to end", lambda: (s := self.show(job))["state"] in TERMINAL and s, timeout)

    def containers(self) -> list[str]:
        base = self.root / "containers"
        return sorted(p.name for p in base.iterdir() if len(p.name) == 64) if base.exists() else []

    def quiesce(self) -> None:
        queue = json.loads(self.rade("queue", "--all", "--json").stdout)
        alive = [str(j["id"]) for j in queue if j["state"] not in TERMINAL]
        if alive:
            self.rade("cancel", *alive, check=False)
        self.wait_for("every container to be gone", lambda: not self.containers(), timeout=60)


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


def leftovers(state: devcluster.ClusterState | None, jobs: list[int]) -> list[str]:
    """What of our dev cluster is still on the machine: namespaces, links, the cgroups of our jobs' tasks
    (other clusters of this machine, in other slots, are not ours to check)."""
    if state is None:
        return []
    found = [f"netns {n.netns}" for n in state.nodes if Path("/run/netns", n.netns).exists()]
    links = [n.host_link for n in state.nodes] + [state.bridge]
    found += [f"link {name}" for name in links if Path("/sys/class/net", name).exists()]
    ours = tuple(f"{slice_prefix(state.root, n.name)}.{job}." for n in state.nodes for job in jobs)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        slice_dir = hierarchy / SLICE_PARENT
        if slice_dir.is_dir() and jobs:
            found += [f"cgroup {c}" for c in slice_dir.iterdir() if c.is_dir() and c.name.startswith(ours)]
    return found


@pytest.fixture(scope="module")
def live_mpi_cluster(mpi_image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MpiCluster]:
    root = tmp_path_factory.mktemp("mpi-cluster")
    (root / "images").symlink_to(mpi_image_root / "images")
    cluster = MpiCluster(root)
    try:
        devcluster.up(str(root), 2, timeout=60)
        yield cluster
    finally:
        state = devcluster.load_state(str(root))
        procs = [p for p in ([state.scheduler] + [n.agent for n in state.nodes]) if p] if state else []
        devcluster.down(str(root))
        left = leftovers(state, cluster.jobs) + [f"process {p.pid}" for p in procs if devcluster.is_alive(p)]
        left += [f"container {c}" for c in cluster.containers()]
        assert not left, f"the cluster left {left}"


@pytest.fixture
def mpi_cluster(live_mpi_cluster: MpiCluster) -> Iterator[MpiCluster]:
    try:
        yield live_mpi_cluster
    finally:
        live_mpi_cluster.quiesce()
