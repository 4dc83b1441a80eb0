"""The cgroup v2 driver on a real, pure cgroup v2 kernel: run inside the guest of `guest.py` only.

pytest on the host does not collect this file (its name is not test_*.py); test_v2_guest.py boots the
guest, which runs it by name with RADE_IN_V2_GUEST=1. There /sys/fs/cgroup is one cgroup2 mount holding
every controller, and nothing but this test uses it, so the kernel's own counters (cpu.stat, memory.events,
pids.events, cgroup.events) judge the driver.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from engine.cgroups import NO_LIMITS, CgroupV2, Limits, host_version, open_cgroup

pytestmark = pytest.mark.skipif(os.environ.get("RADE_IN_V2_GUEST") != "1",
                                reason="runs only inside the cgroup v2 test guest (test_v2_guest.py)")

BUSYBOX = "/bin/busybox"
MIB = 1024 * 1024
HOG = [BUSYBOX, "awk", "BEGIN { for (i = 0; ; i++) a[i] = sprintf(\"%4096d\", i) }"]
LOOP = [BUSYBOX, "sh", "-c", "while :; do :; done"]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _keyed(path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in _read(path).splitlines())}


@pytest.fixture
def cgroup() -> Iterator[CgroupV2]:
    driver = open_cgroup(f"test-{uuid.uuid4().hex[:12]}")
    assert isinstance(driver, CgroupV2)
    try:
        yield driver
    finally:
        driver.remove()
    assert not os.path.exists(driver.path)


@pytest.fixture
def spawn() -> Iterator:
    """Start a command already inside a cgroup (a shell moves itself there, then execs the command, so none
    of it runs outside), returning once it is in; every process started is killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str], cgroup: CgroupV2) -> subprocess.Popen:
        join = f'echo 0 > {cgroup.path}/cgroup.procs && exec "$@"'
        process = subprocess.Popen([BUSYBOX, "sh", "-c", join, "join", *argv], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        started.append(process)
        deadline = time.monotonic() + 30
        while process.pid not in cgroup.procs() and process.poll() is None:
            assert time.monotonic() < deadline, "the process did not join its cgroup"
            time.sleep(0.005)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_the_guest_is_a_pure_cgroup_v2_host():
    assert host_version() == 2
    assert set(_read("/sys/fs/cgroup/cgroup.controllers").split()) >= {"cpu", "cpuset", "memory", "pids"}
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if " - cgroup " in line], "a cgroup v1 hierarchy is mounted"


def test_create_enables_the_controllers_down_to_the_container(cgroup):
    cgroup.create()
    for where in ("/sys/fs/cgroup", os.path.dirname(cgroup.path)):
        assert set(_read(f"{where}/cgroup.subtree_control").split()) >= {"cpu", "cpuset", "memory", "pids"}
    for name in ("cpu.max", "cpu.weight", "cpuset.cpus", "memory.max", "memory.swap.max", "pids.max"):
        assert os.path.exists(f"{cgroup.path}/{name}"), name


def test_limits_are_accepted_by_the_kernel(cgroup):
    cgroup.create()
    cgroup.apply(Limits(cpus=1.5, cpu_shares=512, cpuset_cpus="0", cpuset_mems="0", memory=64 * MIB,
                        memory_swap=96 * MIB, pids=50))
    assert _read(f"{cgroup.path}/cpu.max") == "150000 100000"
    assert _read(f"{cgroup.path}/cpu.weight") == "20"
    assert _read(f"{cgroup.path}/cpuset.cpus.effective") == "0"
    assert _read(f"{cgroup.path}/memory.max") == str(64 * MIB)
    assert _read(f"{cgroup.path}/memory.swap.max") == str(32 * MIB)
    assert _read(f"{cgroup.path}/pids.max") == "50"


def test_half_a_cpu_throttles_a_busy_loop_to_half_of_one_cpu(cgroup, spawn):
    cgroup.create()
    # On one CPU, so the quota's refill each period needs no wake-up sent across vCPUs, which a loaded
    # host running this guest under TCG can delay (the loop then loses part of its share, not its cap).
    cgroup.apply(Limits(cpus=0.5, cpuset_cpus="0"))
    spawn(LOOP, cgroup)
    time.sleep(0.3)  # past start-up
    before, start = _keyed(f"{cgroup.path}/cpu.stat"), time.monotonic()
    time.sleep(2.0)
    after, wall = _keyed(f"{cgroup.path}/cpu.stat"), time.monotonic() - start
    share = (after["usage_usec"] - before["usage_usec"]) / 1e6 / wall
    periods = after["nr_periods"] - before["nr_periods"]
    throttled = after["nr_throttled"] - before["nr_throttled"]
    print(f"cpu.max 50000 100000: busy loop used {share:.1%} of a CPU, throttled in {throttled}/{periods} periods")
    assert 0.40 <= share <= 0.60
    assert throttled >= periods // 2


def test_memory_hog_is_oom_killed_and_seen_by_the_driver(cgroup, spawn):
    cgroup.create()
    cgroup.apply(Limits(memory=32 * MIB, memory_swap=32 * MIB))
    assert not cgroup.oom_killed()
    hog = spawn(HOG, cgroup)
    assert hog.wait(timeout=120) == -9
    assert cgroup.oom_killed()
    assert _keyed(f"{cgroup.path}/memory.events")["oom_kill"] >= 1
    stats = cgroup.stats()
    assert 16 * MIB < stats.memory_peak <= 32 * MIB


def test_pids_limit_refuses_forks(cgroup, spawn):
    cgroup.create()
    cgroup.apply(Limits(pids=4))
    forker = [BUSYBOX, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 60 & done; wait"]
    spawn(forker, cgroup)
    deadline = time.monotonic() + 30
    while _keyed(f"{cgroup.path}/pids.events")["max"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _keyed(f"{cgroup.path}/pids.events")["max"] >= 1
    assert len(cgroup.procs()) <= 4
    assert cgroup.stats().pids <= 4


def test_freeze_stops_and_thaw_resumes(cgroup, spawn):
    cgroup.create()
    spawn(LOOP, cgroup)
    time.sleep(0.2)
    cgroup.freeze()
    assert cgroup.is_frozen()
    used = _keyed(f"{cgroup.path}/cpu.stat")["usage_usec"]
    time.sleep(0.5)
    assert _keyed(f"{cgroup.path}/cpu.stat")["usage_usec"] == used
    cgroup.thaw()
    assert not cgroup.is_frozen()
    time.sleep(0.5)
    assert _keyed(f"{cgroup.path}/cpu.stat")["usage_usec"] > used


def test_kill_all_kills_every_process_and_remove_leaves_nothing(cgroup, spawn):
    cgroup.create()
    shell = spawn([BUSYBOX, "sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait"], cgroup)
    deadline = time.monotonic() + 30
    while len(cgroup.procs()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(cgroup.procs()) == 4
    cgroup.kill_all()
    assert shell.wait(timeout=10) == -9
    deadline = time.monotonic() + 10
    while cgroup.populated() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cgroup.populated()
    cgroup.remove()
    assert not os.path.exists(cgroup.path)
    assert not os.path.exists(os.path.dirname(cgroup.path)), "the shared parent outlived its last container"


def test_moving_a_process_by_cgroup_procs(cgroup, spawn):
    """A move through cgroup.procs (the v2 driver's only way in): correct, and its cost on this kernel."""
    cgroup.create()
    other = CgroupV2(f"test-{uuid.uuid4().hex[:12]}")
    other.create()
    try:
        sleeper = spawn(["sleep", "60"], cgroup)
        costs: dict[str, list[float]] = {"back to back": [], "0.2 s apart": []}
        for kind, gap in (("back to back", 0.0), ("0.2 s apart", 0.2)):
            for round_ in range(10):
                target = other if round_ % 2 == 0 else cgroup
                time.sleep(gap)
                start = time.perf_counter()
                target.add(sleeper.pid)
                costs[kind].append(time.perf_counter() - start)
                assert target.procs() == [sleeper.pid]
        # A move takes the threadgroup rwsem for writing, which waits out an RCU grace period unless a
        # move shortly before left it in its slow mode: spaced moves show the grace period, if any.
        print("cgroup.procs move, median: " + ", ".join(
            f"{kind} {statistics.median(c) * 1e3:.2f} ms" for kind, c in costs.items()))
    finally:
        for process_cgroup in (cgroup, other):
            process_cgroup.kill_all()
        other.remove()


@pytest.fixture(scope="module")
def busybox_layer() -> Iterator[str]:
    """An image layer: busybox with its applets linked, and the usual top-level dirs."""
    layer = tempfile.mkdtemp(prefix="rade-test-layer-")
    try:
        os.makedirs(f"{layer}/bin")
        shutil.copy2(BUSYBOX, f"{layer}/bin/busybox")
        for applet in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split():
            if applet != "busybox":
                os.symlink("busybox", f"{layer}/bin/{applet}")
        for d in ("tmp", "etc", "root", "proc", "sys", "dev", "mnt"):
            os.makedirs(f"{layer}/{d}", exist_ok=True)
        yield layer
    finally:
        shutil.rmtree(layer, ignore_errors=True)


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [p for p in (line.split()[4] for line in f) if p == path or p.startswith(path + "/")]


@pytest.fixture
def container(busybox_layer: str) -> Iterator:
    """Launch a container on the busybox layer, its output in a file; cleaned up (cgroup, mounts, state)."""
    from engine.launch import LaunchConfig, launch

    base = tempfile.mkdtemp(prefix="rade-test-state-")
    launched = []

    def start(argv: list[str], limits: Limits = NO_LIMITS, parent: str = "rade"):
        cid = f"test-{uuid.uuid4().hex[:12]}"
        state = f"{base}/{cid}"
        os.makedirs(state)
        out = os.open(f"{state}.out", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            process = launch(LaunchConfig(container_id=cid, lower_dirs=(busybox_layer,), upper_dir=f"{state}/upper",
                                          work_dir=f"{state}/work", rootfs_dir=f"{state}/rootfs", argv=tuple(argv),
                                          limits=limits, cgroup_parent=parent, stdout=out, stderr=out,
                                          stdin=os.open(os.devnull, os.O_RDONLY)))
        finally:
            os.close(out)
        launched.append(process)
        return process, f"{state}.out"

    try:
        yield start
    finally:
        for process in launched:
            process.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    for process in launched:
        assert not os.path.exists(process.cgroup.path), "container cgroup left behind"
    assert _mounts_under(base) == [] and _mounts_under(busybox_layer) == []


def test_launched_container_is_in_its_cgroup_and_sees_it_as_root(container):
    script = "cat /proc/self/cgroup; cat /sys/fs/cgroup/memory.max; read line < /proc/self/cgroup; sleep 1"
    process, out = container(["sh", "-c", script], Limits(memory=48 * MIB, pids=20))
    assert isinstance(process.cgroup, CgroupV2)
    assert process.pid in process.cgroup.procs()
    assert _read(f"/proc/{process.pid}/cgroup") == f"0::/{process.cgroup.name}"
    assert process.wait() == 0
    lines = _read(out).splitlines()
    assert lines[0] == "0::/"
    assert lines[1] == str(48 * MIB)
    process.cleanup()


def test_launched_memory_hog_exits_137_and_is_reported_oom(container):
    process, _ = container(HOG[1:], Limits(memory=32 * MIB, memory_swap=32 * MIB))
    assert process.wait() == 137
    assert process.oom_killed()
    assert process.stats().memory_peak <= 32 * MIB


def test_container_under_a_nested_task_slice_gets_its_limits_and_leaves_the_slice(container):
    """The node agent's layout on v2: a slice made first (controllers delegated through it), the container's
    cgroup below it; the container's cgroup goes with it, the slice stays with its counters."""
    from agent.slices import container_parent, make_slice, remove_slice

    name = f"test-{uuid.uuid4().hex[:12]}"
    limits = Limits(cpuset_cpus="1", memory=48 * MIB, pids=20)
    slice_ = make_slice(name, limits)
    try:
        assert set(_read(f"{slice_.path}/cgroup.subtree_control").split()) >= {"cpuset", "memory", "pids"}
        process, out = container(["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/cpuset.cpus.effective"],
                                 limits, container_parent(name))
        own = process.cgroup.path
        assert os.path.dirname(own) == slice_.path
        assert process.wait() == 0
        assert _read(out).splitlines() == ["0::/", "1"]
        process.cleanup()
        assert not os.path.exists(own) and os.path.isdir(slice_.path)
        assert slice_.stats().cpu_seconds > 0
    finally:
        remove_slice(name)
    assert not os.path.exists(slice_.path)
    assert not os.path.exists(os.path.dirname(slice_.path)), "the agents' parent outlived its last slice"


@pytest.fixture
def state_root() -> Iterator[str]:
    """A rade state root holding the busybox image; every container on it removed at teardown."""
    import sys

    root = tempfile.mkdtemp(prefix="rade-test-root-")
    rade = [sys.executable, "-m", "rade", "--root", root]
    try:
        subprocess.run([*rade, "image", "bootstrap", "busybox", "busybox"], check=True, capture_output=True)
        yield root
    finally:
        for name in ("hog", "web"):
            subprocess.run([*rade, "rm", "-f", name], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    assert _mounts_under(root) == []


def test_rade_run_with_a_memory_limit_reports_the_oom_kill(state_root):
    import json
    import sys

    rade = [sys.executable, "-m", "rade", "--root", state_root]
    hog = ["awk", "BEGIN { for (i = 0; ; i++) a[i] = sprintf(\"%4096d\", i) }"]
    for name in ((), ("--name", "hog")):
        done = subprocess.run([*rade, "run", *(name or ("--rm",)), "--network", "none", "--memory", "32M",
                               "busybox", *hog], check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode == 137, done.stderr
    inspected = subprocess.run([*rade, "inspect", "hog"], capture_output=True, text=True, check=True).stdout
    state = json.loads(inspected)[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    subprocess.run([*rade, "rm", "hog"], check=True, capture_output=True)
    assert not [d for d in os.listdir("/sys/fs/cgroup") if d.startswith("rade")], "a rade cgroup was left"


def test_detached_container_pauses_execs_and_stops_on_v2(state_root):
    import json
    import sys

    def rade(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "rade", "--root", state_root, *args], check=False,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"rade {' '.join(args)}: {done.stderr}"
        return done.stdout

    def state() -> dict:
        return json.loads(rade("inspect", "web"))[0]["State"]

    rade("run", "-d", "--name", "web", "--network", "none", "--cpus", "0.5", "--memory", "64M", "--pids-limit", "30",
         "busybox", "sleep", "300")
    pid = state()["Pid"]
    own = _read(f"/proc/{pid}/cgroup").removeprefix("0::")
    assert _read(f"/sys/fs/cgroup{own}/cpu.max") == "50000 100000"
    assert _read(f"/sys/fs/cgroup{own}/memory.max") == str(64 * MIB)
    assert rade("exec", "web", "cat", "/proc/self/cgroup").strip() == "0::/"
    rade("pause", "web")
    assert state()["Status"] == "paused" and _keyed(f"/sys/fs/cgroup{own}/cgroup.events")["frozen"] == 1
    rade("unpause", "web")
    assert state()["Status"] == "running" and _keyed(f"/sys/fs/cgroup{own}/cgroup.events")["frozen"] == 0
    assert "web" in rade("stats", "--no-stream")
    rade("stop", "-t", "1", "web")
    assert state()["Status"] == "exited"
    assert not os.path.exists(f"/sys/fs/cgroup{own}")
    rade("rm", "web")
