"""How a launched container's first process gets into its cgroup: with a v2 driver it is born there
(clone3), never moved by pid. On this hybrid host the v2 driver is exercised on the real cgroup2 mount.

Each check runs in a child forked for it: a launch born in its cgroup needs a process of one thread, and
the test process may hold threads other tests left (a fork keeps only the thread that forks)."""

from __future__ import annotations

import os
import signal
import traceback
import uuid
from collections.abc import Callable, Iterator

import pytest

from engine import launch as launch_module
from engine import nsenter
from engine.cgroups import CgroupV2

pytestmark = pytest.mark.root


@pytest.fixture
def v2_driver(monkeypatch) -> Iterator[tuple[CgroupV2, list[int]]]:
    """A v2 cgroup on the host's cgroup2 mount as the one every launch opens, and the pids `add` was
    asked to move (recorded, not moved: a pid moved would hide a child not born inside)."""
    mount = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/unified"
    if not os.path.exists(f"{mount}/cgroup.procs"):
        pytest.skip("this host has no cgroup2 mount")
    cgroup = CgroupV2(f"test-{uuid.uuid4().hex[:12]}", mount=mount)
    moved: list[int] = []
    monkeypatch.setattr(CgroupV2, "add", lambda self, pid: moved.append(pid))
    monkeypatch.setattr(launch_module, "open_cgroup", lambda container_id, parent=None: cgroup)
    try:
        yield cgroup, moved
    finally:
        cgroup.remove()


def _in(pid: int, cgroup: CgroupV2) -> bool:
    with open(f"/proc/{pid}/cgroup") as f:
        return f"0::/{cgroup.name}\n" in f.read()


def _in_a_fork(check: Callable[[], None]) -> None:
    """Run `check` in a forked child of one thread; re-raise its failure here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        report = b""
        try:
            check()
        except BaseException:  # noqa: BLE001 - everything goes back to the test
            report = traceback.format_exc().encode()
        finally:
            os.write(write_end, report)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    os.waitpid(pid, 0)
    assert not report, report


def test_a_container_with_a_v2_driver_is_born_in_its_cgroup_not_moved(launcher, v2_driver):
    cgroup, moved = v2_driver

    def check() -> None:
        process = launcher.start(launcher.config(["sleep", "30"], network="none"))
        try:
            assert _in(process.pid, cgroup) and process.pid in cgroup.procs() and moved == []
        finally:
            process.kill(signal.SIGKILL)
            process.wait()
            process.cleanup()

    _in_a_fork(check)


def test_a_process_entered_with_a_v2_driver_is_born_in_the_cgroup_not_moved(launcher, v2_driver):
    cgroup, moved = v2_driver

    def check() -> None:
        config = launcher.config(["sleep", "30"], network="none")
        process = launcher.start(config)
        try:
            entered = nsenter.enter(process.pid, cgroup, config, ("sleep", "30"))
            assert _in(entered.pid, cgroup) and moved == []
        finally:
            process.kill(signal.SIGKILL)
            process.wait()
            process.cleanup()
        entered.wait()

    _in_a_fork(check)
