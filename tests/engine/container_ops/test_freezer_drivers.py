"""The freezer of both cgroup drivers on this host's real mounts: v1's freezer hierarchy and the core
`cgroup.freeze` of the cgroup2 mount (which offers no controllers here, but freezing is core). A busy
process in a frozen cgroup accrues no CPU time by the cgroup's own accounting; thawed, it runs again."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from engine.cgroups import CgroupV1, CgroupV2, hierarchies
from tests.engine.containers.conftest import wait_for

pytestmark = pytest.mark.root

UNIFIED = "/sys/fs/cgroup/unified"


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _driver(kind: str):
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    name = f"t{uuid.uuid4().hex[:12]}"
    if kind == "v1":
        if "freezer" not in hierarchies() or "cpuacct" not in hierarchies():
            pytest.skip("no v1 freezer and cpuacct hierarchies here")
        return CgroupV1(name, parent="rade-freeze-test")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return CgroupV2(name, parent="rade-freeze-test")
    if not os.path.exists(f"{UNIFIED}/cgroup.procs"):
        pytest.skip("no cgroup2 mount here")
    return CgroupV2(name, parent="rade-freeze-test", mount=UNIFIED)


def _cpu(cgroup) -> float:
    return cgroup.stats().cpu_seconds



@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_frozen_cgroup_uses_no_cpu_and_runs_again_when_thawed(kind, spinner):
    cgroup = _driver(kind)
    try:
        cgroup.create()
        cgroup.add(spinner.pid)
        wait_for(lambda: _cpu(cgroup) > 0.01, what="the spinner to use CPU")
        cgroup.freeze()
        assert cgroup.is_frozen()
        before = _cpu(cgroup)
        time.sleep(0.5)  # the window in which a running spinner would use a good part of a CPU
        assert _cpu(cgroup) - before < 0.005
        with open(f"/proc/{spinner.pid}/stat") as fh:
            assert fh.read().split(")")[-1].split()[0] in ("S", "D")  # in the freezer, not running
        cgroup.thaw()
        assert not cgroup.is_frozen()
        frozen_at = _cpu(cgroup)
        wait_for(lambda: _cpu(cgroup) > frozen_at + 0.01, what="the thawed spinner to use CPU again")
    finally:
        cgroup.remove()
    assert not any(os.path.exists(p) for p in cgroup.paths())


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_kill_all_ends_a_frozen_cgroup(kind, spinner):
    cgroup = _driver(kind)
    try:
        cgroup.create()
        cgroup.add(spinner.pid)
        cgroup.freeze()
        cgroup.kill_all()
        assert spinner.wait(timeout=10) == -9
    finally:
        cgroup.remove()
