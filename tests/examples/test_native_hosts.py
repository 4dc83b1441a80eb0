"""bench/mpi_native.py: mpirun across two namespace hosts works, and the hosts vanish afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

# Not the benchmark's own names, so that the tests and a benchmark run can share the machine.
HOSTS = ("rade-mpt-a", "rade-mpt-b")
BRIDGE = "rade-mbt0"


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


def assert_no_hosts_left(mpi_native) -> None:
    assert not netns_names() & set(HOSTS)
    assert not link_exists(BRIDGE)
    assert not any(link_exists(mpi_native.link_name(name)) for name in HOSTS)


@pytest.fixture
def native(mpi_native, system_python):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    try:
        yield mpi_native
    finally:
        mpi_native.remove_hosts(HOSTS, BRIDGE)


def test_ranks_run_on_two_hosts_and_talk_over_the_bridge(native):
    with native.make_hosts(HOSTS, BRIDGE) as hosts:
        assert netns_names() >= set(HOSTS)
        out = native.mpirun(hosts, 2, [native.SYSTEM_PYTHON, str(native.EXAMPLES / "pingpong.py"),
                                       "--sizes", "8,1048576", "--iterations", "20"])
        assert out.startswith("pingpong: rank 0 on rade-mpt-a <-> rank 1 on rade-mpt-b,")
        rows = native.parse_pingpong(out)
        assert sorted(rows) == [8, 1048576]
        assert all(row.latency_us > 0 and row.bandwidth_mbps > 0 for row in rows.values())
        heat = native.run_heat(hosts, nx=40, ny=30, steps=10)
        assert (heat.ranks, heat.nx, heat.ny, heat.steps) == (2, 40, 30, 10)
        assert heat.time_per_step_s > 0 and heat.l2 > 0
        assert hosts.leftover_pids() == []
    assert_no_hosts_left(native)


def test_each_host_runs_its_ranks_in_a_session_of_its_own(native):
    # As ssh gives each connection a session: the kernel's autogroup scheduling weighs CPU shares by
    # session, so ranks of two hosts must not share one (a rade job's containers each have their own).
    program = "import os; from mpi4py import MPI; print('session', MPI.COMM_WORLD.rank, os.getsid(0))"
    with native.make_hosts(HOSTS, BRIDGE) as hosts:
        out = native.mpirun(hosts, 2, [native.SYSTEM_PYTHON, "-c", program])
    sessions = dict(line.split()[1:] for line in out.splitlines() if line.startswith("session "))
    assert sorted(sessions) == ["0", "1"]
    assert sessions["0"] != sessions["1"]


def test_hosts_are_removed_when_the_run_fails(native):
    with pytest.raises(native.NativeRunError, match="exited 2"), native.make_hosts(HOSTS, BRIDGE) as hosts:
        native.mpirun(hosts, 2, [native.SYSTEM_PYTHON, str(native.EXAMPLES / "heat.py"), "--nx", "0"])
    assert_no_hosts_left(native)


def test_removing_hosts_twice_or_when_none_exist_is_harmless(native):
    native.remove_hosts(HOSTS, BRIDGE)
    native.remove_hosts(HOSTS, BRIDGE)
    assert_no_hosts_left(native)


def pids_in(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    return [int(word) for word in out.split()]


def test_interrupted_benchmark_removes_hosts_and_kills_its_ranks(native):
    script = native.EXAMPLES.parent.parent / "bench" / "mpi_native.py"
    bench = subprocess.Popen([sys.executable, str(script), "--runs", "50", "--heat-steps", "5000",
                              "--hosts", ",".join(HOSTS), "--bridge", BRIDGE],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        second_host = HOSTS[1]
        deadline = time.monotonic() + 60
        while not pids_in(second_host):  # a rank (or its daemon) runs on the second host
            assert bench.poll() is None, bench.stderr.read()
            assert time.monotonic() < deadline, "no MPI process appeared on the second host"
            time.sleep(0.05)
        running = pids_in(second_host)
        bench.send_signal(signal.SIGINT)
        _, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.communicate()
    assert bench.returncode == 130, err
    assert "interrupted; test hosts removed" in err
    assert_no_hosts_left(native)
    assert not [pid for pid in running if native.is_alive(pid)]


def test_names_too_long_for_interfaces_are_refused_before_anything_is_made(native):
    too_long = ("rade-mpt-toolong", HOSTS[1])
    with pytest.raises(native.NativeRunError, match="too long for interface names: rade-mpt-toolong"), \
            native.make_hosts(too_long, BRIDGE):
        pass
    assert_no_hosts_left(native)
