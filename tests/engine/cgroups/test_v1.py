"""The cgroup v1 driver on this host's real v1 hierarchies."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from engine.cgroups import CgroupV1, Limits, hierarchies
from engine.errors import CgroupError

pytestmark = pytest.mark.root


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _exists(controller: str, cgroup: CgroupV1) -> bool:
    return os.path.isdir(f"{hierarchies()[controller]}/{cgroup.name}")


def test_create_joins_memory_cpuacct_freezer_under_rade_and_limits_join_the_rest(v1_cgroup):
    v1_cgroup.create()
    assert v1_cgroup.name.startswith("rade/")
    assert all(_exists(c, v1_cgroup) for c in ("memory", "cpuacct", "freezer"))
    assert not _exists("cpu", v1_cgroup) and not _exists("pids", v1_cgroup)
    v1_cgroup.apply(Limits(cpus=1, pids=10))
    assert _exists("cpu", v1_cgroup) and _exists("pids", v1_cgroup)
    assert not _exists("cpuset", v1_cgroup)


def test_limits_are_written_to_the_v1_files(v1_cgroup):
    v1_cgroup.create()
    v1_cgroup.apply(Limits(cpus=1.5, cpu_shares=512, cpuset_cpus="0", cpuset_mems="0",
                           memory=128 * 1024 * 1024, memory_swap=256 * 1024 * 1024, pids=64))
    dirs = {controller: f"{mount}/{v1_cgroup.name}" for controller, mount in hierarchies().items()}
    assert _read(f"{dirs['cpu']}/cpu.cfs_quota_us") == "150000"
    assert _read(f"{dirs['cpu']}/cpu.cfs_period_us") == "100000"
    assert _read(f"{dirs['cpu']}/cpu.shares") == "512"
    assert _read(f"{dirs['cpuset']}/cpuset.cpus") == "0"
    assert _read(f"{dirs['memory']}/memory.limit_in_bytes") == str(128 * 1024 * 1024)
    if os.path.exists(f"{dirs['memory']}/memory.memsw.limit_in_bytes"):
        assert _read(f"{dirs['memory']}/memory.memsw.limit_in_bytes") == str(256 * 1024 * 1024)
    assert _read(f"{dirs['pids']}/pids.max") == "64"


def test_new_cpuset_cgroup_inherits_cpus_so_a_pid_can_join(v1_cgroup, sleeper):
    v1_cgroup.create()
    v1_cgroup.apply(Limits(cpuset_mems="0"))
    v1_cgroup.add(sleeper.pid)
    assert v1_cgroup.procs() == [sleeper.pid]
    with open(f"/proc/{sleeper.pid}/cgroup") as f:
        assert f"cpuset:/{v1_cgroup.name}" in f.read()


def test_a_refused_limit_names_the_file_and_value(v1_cgroup):
    v1_cgroup.create()
    with pytest.raises(CgroupError) as caught:
        v1_cgroup.apply(Limits(cpuset_cpus="4096"))
    assert "cpuset.cpus" in str(caught.value) and "4096" in str(caught.value)


def test_stats_count_cpu_time_and_memory(v1_cgroup, sleeper):
    v1_cgroup.create()
    pid = os.fork()
    if pid == 0:
        v1_cgroup.add(os.getpid())
        data = bytearray(8 * 1024 * 1024)  # touched, so charged to the cgroup
        start = time.process_time()
        while time.process_time() - start < 0.2:  # CPU time, not wall time: the host may be busy
            data[0] = 1
        os._exit(0)
    os.waitpid(pid, 0)
    stats = v1_cgroup.stats()
    assert stats.cpu_seconds >= 0.2
    assert stats.memory_peak >= 8 * 1024 * 1024
    assert not v1_cgroup.oom_killed()


def test_kill_all_kills_every_process(v1_cgroup, sleeper):
    v1_cgroup.create()
    v1_cgroup.add(sleeper.pid)
    v1_cgroup.kill_all()
    assert sleeper.wait(timeout=5) == -9


def test_kill_all_reaches_processes_forked_meanwhile(v1_cgroup):
    v1_cgroup.create()
    pid = os.fork()
    if pid == 0:
        v1_cgroup.add(os.getpid())
        while True:  # a fork loop: each child forks again and exits
            try:
                if os.fork() != 0:
                    os._exit(0)
            except OSError:
                pass
    deadline = time.monotonic() + 5
    while not v1_cgroup.procs():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    v1_cgroup.kill_all()
    deadline = time.monotonic() + 5
    while v1_cgroup.procs():
        assert time.monotonic() < deadline, "processes survived kill_all"
        time.sleep(0.01)
    os.waitpid(pid, 0)


def test_remove_with_processes_inside_kills_them_and_succeeds(v1_cgroup, sleeper):
    v1_cgroup.create()
    v1_cgroup.add(sleeper.pid)
    v1_cgroup.remove()
    assert sleeper.wait(timeout=5) == -9
    assert not any(os.path.exists(p) for p in v1_cgroup.paths())


def test_remove_after_a_half_made_cgroup_and_twice(v1_cgroup):
    # As if create() failed after the first hierarchy.
    first = v1_cgroup.paths()[0]
    os.makedirs(first)
    v1_cgroup.remove()
    v1_cgroup.remove()
    assert not any(os.path.exists(p) for p in v1_cgroup.paths())


def test_remove_leaves_no_rade_parent_when_it_is_empty(v1_cgroup):
    v1_cgroup.create()
    v1_cgroup.remove()
    for mount in hierarchies().values():
        if os.path.isdir(f"{mount}/rade"):
            assert os.listdir(f"{mount}/rade"), "an empty rade parent was left"  # others' containers


def test_root_cgroup_limits_are_never_written():
    mounts = hierarchies()
    watched = [f"{mounts[c]}/{f}" for c, f in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"),
                                              ("cpu", "cpu.shares"), ("cpuset", "cpuset.cpus"))
               if c in mounts]
    before = [_read(path) for path in watched]
    cgroup = CgroupV1("test-root-untouched")
    try:
        cgroup.create()
        cgroup.apply(Limits(cpus=0.5, cpu_shares=256, memory=64 * 1024 * 1024, cpuset_cpus="0"))
    finally:
        cgroup.remove()
    assert [_read(path) for path in watched] == before


def test_kill_all_without_a_freezer_hierarchy_still_empties_the_cgroup(sleeper):
    mounts = {c: m for c, m in hierarchies().items() if c != "freezer"}
    if "memory" not in mounts or os.geteuid() != 0:
        pytest.skip("needs root and a v1 memory hierarchy")
    cgroup = CgroupV1("test-no-freezer", mounts=mounts)
    try:
        cgroup.create()
        cgroup.add(sleeper.pid)
        cgroup.kill_all()
        assert sleeper.wait(timeout=5) == -9
    finally:
        cgroup.remove()


def test_a_cgroup_with_running_processes_is_not_taken_over(v1_cgroup, sleeper):
    v1_cgroup.create()
    v1_cgroup.add(sleeper.pid)
    twin = CgroupV1(v1_cgroup.name.split("/", 1)[1])
    with pytest.raises(CgroupError) as caught:
        twin.create()
    assert "running" in str(caught.value)
    assert sleeper.poll() is None  # the first one's process is untouched


def test_an_empty_cgroup_left_by_a_crash_is_reused(v1_cgroup):
    v1_cgroup.create()
    CgroupV1(v1_cgroup.name.split("/", 1)[1]).create()


def test_a_cpuset_parent_made_empty_by_another_process_is_filled_before_a_child_takes_cpus(sleeper):
    # Two agents on one host share a parent: one may have just made it (a v1 cpuset is born with no CPUs)
    # when the other makes its child and writes the child's CPUs, which the kernel refuses (EACCES) while
    # the parent has none.
    if "cpuset" not in hierarchies():
        pytest.skip("this host mounts no cgroup v1 cpuset hierarchy")
    parent = f"rade-test-{uuid.uuid4().hex[:8]}"
    parent_dir = f"{hierarchies()['cpuset']}/{parent}"
    os.mkdir(parent_dir)  # as the other process left it: made, not yet filled
    cgroup = CgroupV1(f"test-{uuid.uuid4().hex[:12]}", parent=parent)
    try:
        assert _read(f"{parent_dir}/cpuset.cpus") == ""
        cgroup.create()
        cgroup.apply(Limits(cpuset_cpus="0"))
        cgroup.add(sleeper.pid)
        assert _read(f"{parent_dir}/{cgroup.name.split('/')[-1]}/cpuset.cpus") == "0"
        assert cgroup.procs() == [sleeper.pid]
    finally:
        cgroup.remove()
        if os.path.isdir(parent_dir):
            os.rmdir(parent_dir)


def test_a_single_threaded_process_joins_every_hierarchy_by_itself_through_tasks(v1_cgroup):
    v1_cgroup.create()
    v1_cgroup.apply(Limits(cpus=1, pids=10))
    fds = v1_cgroup.self_join_files()
    assert len(fds) >= 4  # memory, cpuacct, freezer, cpu (co-mounted ones once), pids
    joined_r, joined_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in fds:
                os.write(fd, b"0")
            os.write(joined_w, b"1")
            os.execvp("sleep", ["sleep", "60"])
        finally:
            os._exit(1)
    for fd in (*fds, joined_w):
        os.close(fd)
    try:
        assert os.read(joined_r, 1) == b"1"  # every write done
        os.close(joined_r)
        assert v1_cgroup.procs() == [pid]
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        for controller in ("memory", "cpuacct", "freezer", "cpu", "pids"):
            assert any(controller in line.split(":")[1].split(",") and line.endswith(f":/{v1_cgroup.name}")
                       for line in lines), (controller, lines)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_self_join_files_of_a_cgroup_not_made_is_a_cgroup_error(v1_cgroup):
    v1_cgroup._joined.append(f"{hierarchies()['memory']}/rade/no-such-cgroup-{uuid.uuid4().hex[:8]}")
    with pytest.raises(CgroupError, match="cannot open .*tasks"):
        v1_cgroup.self_join_files()
