"""A child born inside a cgroup v2 directory (clone3's CLONE_INTO_CGROUP), on the host's real cgroup2 mount."""

from __future__ import annotations

import os
import tempfile

import pytest

from engine.clone3 import fork_into_cgroup

pytestmark = pytest.mark.root


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.strip().split(":", 2)[2] for line in f if line.startswith("0::"))


def test_a_child_forked_into_a_v2_cgroup_is_in_it_from_its_start(v2_unified_cgroup):
    v2_unified_cgroup.create()
    fd = v2_unified_cgroup.directory_fd()
    read_end, write_end = os.pipe()
    try:
        pid = fork_into_cgroup(fd)
        if pid == 0:
            try:
                os.write(write_end, _cgroup_of(os.getpid()).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        seen = os.read(read_end, 4096).decode()
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == "/" + v2_unified_cgroup.name
    assert _cgroup_of(os.getpid()) != seen  # the parent stays where it was


def test_a_descriptor_that_is_no_cgroup_raises_and_forks_nothing():
    with tempfile.TemporaryDirectory() as plain:
        fd = os.open(plain, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with pytest.raises(OSError):
                fork_into_cgroup(fd)
        finally:
            os.close(fd)



def test_fork_in_a_process_with_threads_forks_plainly_for_the_caller_to_move(v2_unified_cgroup):
    import threading

    from engine.clone3 import fork_in

    v2_unified_cgroup.create()
    fd = v2_unified_cgroup.directory_fd()
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        pid, born_inside = fork_in(fd)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        stop.set()
        worker.join()
        os.close(fd)
    assert not born_inside
