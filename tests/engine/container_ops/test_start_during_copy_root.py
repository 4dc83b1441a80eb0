"""`rade start` of a stopped container while `rade cp` copies into it waits for the copy and then starts
(as `docker start` waits for a `docker cp`), and says what it waited for if the copy outlasts the wait."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from engine.containers.removal import supervisor_lock
from engine.containers.startlock import wait_for_copy
from engine.containers.store import ContainerStore
from engine.errors import ContainerError
from tests.engine.containers.conftest import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _is_held(lock: str) -> bool:
    """Whether some process holds a flock on `lock` (read from /proc/locks, without touching the lock)."""
    st = os.stat(lock)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as fh:
        return any(line.split()[1] == "FLOCK" and line.split()[5] == wanted for line in fh)


def _is_asleep(pid: int) -> bool:
    """Whether process `pid` sleeps on a timer (the start's wait for the lock; nothing else in it sleeps)."""
    try:
        with open(f"/proc/{pid}/wchan") as fh:
            return "nanosleep" in fh.read()
    except OSError:
        return False


def test_start_waits_for_a_copy_in_progress_then_runs_with_the_copied_file(rade):
    cid = rade.out("create", "--network", "none", "--name", "cp-start", "busybox", "cat", "/copied.txt")
    lock = str(rade.root / "containers" / cid / "supervisor.lock")
    archive = _tar_of("copied.txt", b"arrived before the start\n")
    copy = rade.popen("cp", "-", "cp-start:/", stdin=subprocess.PIPE)
    copy.stdin.write(archive[:512])  # the header only: the copy holds the lock, waiting for the rest
    copy.stdin.flush()
    wait_for(lambda: os.path.exists(lock) and _is_held(lock), 30, "the copy to take the container's lock")

    start = rade.popen("start", "-a", "cp-start", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    # Released only once the start is waiting for it (or has given up: then the test fails below).
    wait_for(lambda: start.poll() is not None or _is_asleep(start.pid), 30, "the start to wait for the copy")
    copy.stdin.write(archive[512:])
    copy.stdin.close()
    assert copy.wait(timeout=60) == 0
    out, err = start.communicate(timeout=60)
    assert start.returncode == 0, err.decode()
    assert out == b"arrived before the start\n"
    rade("rm", "cp-start")


def test_start_outlasted_by_a_copy_says_a_copy_is_in_progress(rade):
    cid = rade.out("create", "--network", "none", "--name", "cp-held", "busybox", "true")
    store = ContainerStore(rade.root)
    record = store.get(cid)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    # The lock held as a copy holds it.
    with supervisor_lock(store, record, "is being started or removed"), pytest.raises(ContainerError) as refused:
        wait_for_copy(store, record, timeout=1.0, clock=lambda: now[0], sleep=sleep)
    assert "a copy into it (or its removal) is in progress" in str(refused.value)
    assert wait_for_copy(store, record) is False  # free again: no wait
    rade("rm", "cp-held")
