"""How a launched container's first process gets into its cgroup: with a v2 driver it is born there
(clone3), never moved by pid. On this hybrid host the v2 driver is exercised on the real cgroup2 mount."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from engine import launch as launch_module
from engine.cgroups import CgroupV2

pytestmark = pytest.mark.root


def _v2_mount() -> str:
    mount = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/unified"
    if not os.path.exists(f"{mount}/cgroup.procs"):
        pytest.skip("this host has no cgroup2 mount")
    return mount


def test_a_container_with_a_v2_driver_is_born_in_its_cgroup_not_moved(launcher, monkeypatch):
    cgroup = CgroupV2(f"test-{uuid.uuid4().hex[:12]}", mount=_v2_mount())
    moved: list[int] = []
    monkeypatch.setattr(CgroupV2, "add", lambda self, pid: moved.append(pid))
    monkeypatch.setattr(launch_module, "open_cgroup", lambda container_id, parent=None: cgroup)
    try:
        process = launcher.start(launcher.config(["sleep", "30"], network="none"))
        with open(f"/proc/{process.pid}/cgroup") as f:
            assert f"0::/{cgroup.name}\n" in f.read()
        assert process.pid in cgroup.procs() and moved == []
        process.kill(signal.SIGKILL)
        process.wait()
    finally:
        cgroup.remove()


def test_a_process_entered_with_a_v2_driver_is_born_in_the_cgroup_not_moved(launcher, monkeypatch):
    from engine import nsenter

    cgroup = CgroupV2(f"test-{uuid.uuid4().hex[:12]}", mount=_v2_mount())
    moved: list[int] = []
    monkeypatch.setattr(CgroupV2, "add", lambda self, pid: moved.append(pid))
    monkeypatch.setattr(launch_module, "open_cgroup", lambda container_id, parent=None: cgroup)
    try:
        config = launcher.config(["sleep", "30"], network="none")
        process = launcher.start(config)
        entered = nsenter.enter(process.pid, cgroup, config, ("sleep", "30"))
        with open(f"/proc/{entered.pid}/cgroup") as f:
            assert f"0::/{cgroup.name}\n" in f.read()
        assert moved == []
        process.kill(signal.SIGKILL)
        entered.wait()
        process.wait()
    finally:
        cgroup.remove()
