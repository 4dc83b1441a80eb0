"""Launches from several processes at once: the shared "rade" cgroup parent is made and removed under
them, and none may fail or leave anything behind."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from engine.cgroups import hierarchies
from engine.launch import LaunchConfig, launch

pytestmark = [pytest.mark.root, pytest.mark.slow]

WORKERS = 4
EACH = 5


def _worker(layer: str, base: str, index: int) -> int:
    """In a forked process: launch EACH containers one after another; 0 if all exited 0."""
    failures = 0
    devnull = os.open(os.devnull, os.O_RDWR)
    for n in range(EACH):
        state = f"{base}/w{index}-{n}"
        os.mkdir(state)
        config = LaunchConfig(container_id=f"test-conc-{os.getpid()}-{n}", lower_dirs=(layer,),
                              upper_dir=f"{state}/upper", work_dir=f"{state}/work", rootfs_dir=f"{state}/rootfs",
                              argv=("true",), stdin=devnull, stdout=devnull, stderr=devnull)
        try:
            process = launch(config)
            failures += process.wait() != 0
            process.cleanup()
        except Exception:  # noqa: BLE001 - counted; the parent asserts on the count
            failures += 1
    return failures


def test_concurrent_launches_all_succeed_and_leave_no_cgroup(busybox_layer):
    base = tempfile.mkdtemp(prefix="rade-test-conc-")
    pids = []
    try:
        for index in range(WORKERS):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = min(_worker(busybox_layer, base, index), 100)
                finally:
                    os._exit(code)
            pids.append(pid)
        failures = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        pids = []
        assert failures == [0] * WORKERS
        for mount in hierarchies().values():
            assert not any(name.startswith("test-conc-") for name in _children(f"{mount}/rade"))
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
        shutil.rmtree(base, ignore_errors=True)


def _children(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir()]
    except FileNotFoundError:
        return []
