"""Fixtures for the cgroup drivers: a unique container id, a process to put in a cgroup, a v2 test tree.

Each fixture removes what it made (the cgroup, the process) even when the test fails.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from engine.cgroups import CgroupV1, CgroupV2, hierarchies

UNIFIED = "/sys/fs/cgroup/unified"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A process to move into a cgroup."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def v1_cgroup() -> Iterator[CgroupV1]:
    _require_root()
    if "memory" not in hierarchies():
        pytest.skip("this host mounts no cgroup v1 memory hierarchy")
    cgroup = CgroupV1(f"test-{uuid.uuid4().hex[:12]}")
    try:
        yield cgroup
    finally:
        cgroup.remove()


@pytest.fixture
def v2_unified_cgroup() -> Iterator[CgroupV2]:
    """A cgroup on the host's real cgroup2 mount (the unified one on a hybrid host)."""
    _require_root()
    mount = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else UNIFIED
    if not os.path.exists(f"{mount}/cgroup.procs"):
        pytest.skip("this host has no cgroup2 mount")
    cgroup = CgroupV2(f"test-{uuid.uuid4().hex[:12]}", mount=mount)
    try:
        yield cgroup
    finally:
        cgroup.remove()


# What the kernel puts in a new non-root cgroup directory with cpu, cpuset, memory and pids enabled.
KERNEL_FILES = {
    "cgroup.procs": "", "cgroup.threads": "", "cgroup.type": "domain\n", "cgroup.subtree_control": "",
    "cgroup.controllers": "cpuset cpu memory pids\n", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "", "cgroup.freeze": "0\n", "cgroup.max.depth": "max\n",
    "cpu.max": "max 100000\n", "cpu.weight": "100\n", "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    "cpuset.cpus": "\n", "cpuset.mems": "\n", "cpuset.cpus.effective": "0-1\n",
    "memory.max": "max\n", "memory.swap.max": "max\n", "memory.current": "0\n", "memory.peak": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "pids.max": "max\n", "pids.current": "0\n",
}
ROOT_FILES = {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
              "cgroup.subtree_control": "", "cgroup.procs": "1\n"}


def lay_out(directory: str, contents: dict[str, str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, text in contents.items():
        with open(f"{directory}/{name}", "w") as f:
            f.write(text)


@pytest.fixture
def v2_tree(tmp_path) -> Iterator[str]:
    """A cgroup2 mount laid out as the kernel lays it out: the root's files, the rade parent, one container."""
    root = str(tmp_path / "cgroup")
    lay_out(root, ROOT_FILES)
    lay_out(f"{root}/rade", {**KERNEL_FILES, "cgroup.subtree_control": ""})
    lay_out(f"{root}/rade/c1", KERNEL_FILES)
    yield root
