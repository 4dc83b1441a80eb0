"""The cgroup v2 driver: its core on the host's real cgroup2 mount, its controller files on a test tree
laid out as the kernel lays it out (this host binds cpu and memory to v1, so its cgroup2 has neither)."""

from __future__ import annotations

import os

import pytest

from engine.cgroups import CgroupV2, Limits
from engine.cgroups.v2 import shares_to_weight
from engine.errors import CgroupError


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.mark.root
def test_core_add_events_kill_and_remove_on_the_real_mount(v2_unified_cgroup, sleeper):
    cgroup = v2_unified_cgroup
    cgroup.create()
    assert os.path.isdir(cgroup.path) and "/rade/" in cgroup.path
    assert not cgroup.populated()
    cgroup.add(sleeper.pid)
    assert cgroup.procs() == [sleeper.pid]
    assert cgroup.populated()
    cgroup.kill_all()
    assert sleeper.wait(timeout=5) == -9
    cgroup.remove()
    assert not os.path.exists(cgroup.path)
    cgroup.remove()


@pytest.mark.root
def test_limit_needing_a_missing_controller_is_refused_clearly(v2_unified_cgroup):
    cgroup = v2_unified_cgroup
    cgroup.create()
    offered = _read(f"{os.path.dirname(os.path.dirname(cgroup.path))}/cgroup.controllers").split()
    if "memory" in offered:
        pytest.skip("this host's cgroup2 mount has a memory controller")
    with pytest.raises(CgroupError) as caught:
        cgroup.apply(Limits(memory=64 * 1024 * 1024))
    assert "memory.max" in str(caught.value)


def test_limits_are_written_to_the_v2_files(v2_tree):
    cgroup = CgroupV2("c1", mount=v2_tree)
    cgroup.create()
    cgroup.apply(Limits(cpus=0.5, cpu_shares=2048, cpuset_cpus="0-1", cpuset_mems="0",
                        memory=64 * 1024 * 1024, memory_swap=96 * 1024 * 1024, pids=100))
    path = f"{v2_tree}/rade/c1"
    assert _read(f"{path}/cpu.max") == "50000 100000"
    assert _read(f"{path}/cpu.weight") == str(shares_to_weight(2048))
    assert _read(f"{path}/cpuset.cpus") == "0-1"
    assert _read(f"{path}/cpuset.mems") == "0"
    assert _read(f"{path}/memory.max") == str(64 * 1024 * 1024)
    assert _read(f"{path}/memory.swap.max") == str(32 * 1024 * 1024)
    assert _read(f"{path}/pids.max") == "100"


def test_unlimited_swap_is_max(v2_tree):
    cgroup = CgroupV2("c1", mount=v2_tree)
    cgroup.apply(Limits(memory=64 << 20, memory_swap=-1))
    assert _read(f"{v2_tree}/rade/c1/memory.swap.max") == "max"


def test_stats_and_oom_from_the_v2_files(v2_tree):
    path = f"{v2_tree}/rade/c1"
    for name, text in {"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
                       "memory.current": "1048576\n", "memory.peak": "67108864\n", "pids.current": "3\n",
                       "memory.events": "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"}.items():
        with open(f"{path}/{name}", "w") as f:
            f.write(text)
    cgroup = CgroupV2("c1", mount=v2_tree)
    stats = cgroup.stats()
    assert stats.cpu_seconds == 2.5
    assert (stats.memory_current, stats.memory_peak, stats.pids) == (1048576, 67108864, 3)
    assert cgroup.oom_killed()


def test_no_oom_kill_recorded_means_not_oom_killed(v2_tree):
    assert not CgroupV2("c1", mount=v2_tree).oom_killed()


def test_kill_all_writes_cgroup_kill(v2_tree):
    CgroupV2("c1", mount=v2_tree).kill_all()
    assert _read(f"{v2_tree}/rade/c1/cgroup.kill") == "1"


def test_controllers_enabled_in_root_and_parent_only_when_offered_and_missing(v2_tree):
    with open(f"{v2_tree}/cgroup.subtree_control", "w") as f:
        f.write("cpu memory\n")
    CgroupV2("c2", mount=v2_tree)._enable_controllers()
    assert _read(f"{v2_tree}/cgroup.subtree_control") == "+cpuset +pids"
    assert _read(f"{v2_tree}/rade/cgroup.subtree_control") == "+cpu +cpuset +memory +pids"


def test_missing_control_file_is_reported_not_created(v2_tree):
    os.remove(f"{v2_tree}/rade/c1/pids.max")
    with pytest.raises(CgroupError) as caught:
        CgroupV2("c1", mount=v2_tree).apply(Limits(pids=10))
    assert "pids.max" in str(caught.value)
    assert not os.path.exists(f"{v2_tree}/rade/c1/pids.max")


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**7, 10000)])
def test_cpu_shares_map_to_weight_as_runc_does(shares, weight):
    assert shares_to_weight(shares) == weight


def test_docker_unlimited_values_mean_no_limit(v2_tree):
    CgroupV2("c1", mount=v2_tree).apply(Limits(pids=-1, cpu_shares=0))
    assert _read(f"{v2_tree}/rade/c1/pids.max") == "max"
    assert _read(f"{v2_tree}/rade/c1/cpu.weight") == "100"


@pytest.mark.parametrize(("limits", "words"), [
    ({"cpus": 0}, "above 0"), ({"memory": 1024 * 1024}, "6M"),
    ({"memory": 64 << 20, "memory_swap": 32 << 20}, "at least memory"),
])
def test_limits_that_cannot_work_are_refused_with_the_rule(limits, words):
    with pytest.raises(CgroupError) as caught:
        Limits(**limits)
    assert words in str(caught.value)


def test_memory_without_swap_setting_allows_as_much_swap_as_memory(v2_tree):
    CgroupV2("c1", mount=v2_tree).apply(Limits(memory=64 << 20))
    assert _read(f"{v2_tree}/rade/c1/memory.swap.max") == str(64 << 20)
