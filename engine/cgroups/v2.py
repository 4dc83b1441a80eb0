"""The cgroup v2 driver: one directory, `<mount>/<parent>/<id>`, on the unified hierarchy.

Limits: cpu.max (quota and period), cpu.weight (from Docker's shares, runc's mapping), cpuset.cpus/mems,
memory.max, memory.swap.max (v2 counts swap apart from memory), pids.max. Stats from cpu.stat,
memory.current and memory.peak; an OOM kill from memory.events' oom_kill; kill-all by cgroup.kill.

Controllers must be enabled in each ancestor's cgroup.subtree_control: the driver enables, in the mount
root and in the shared parent, only the ones the root offers (cgroup.controllers) and only when missing —
that switches a controller on for children, it sets no limit on the root. On a hybrid host whose cgroup2
mount offers no cpu or memory controller, the core (cgroup.procs, cgroup.kill, cgroup.events) still works
and a limit that needs a missing controller is refused with the file it could not write.
"""

from __future__ import annotations

import os
import signal
import time

from engine.cgroups import files
from engine.cgroups.driver import CgroupStats, Limits
from engine.errors import CgroupError

WANTED = ("cpu", "cpuset", "memory", "pids")
CFS_PERIOD_US = 100_000


def shares_to_weight(shares: int) -> int:
    """Docker's --cpu-shares (2..262144, default 1024) as cpu.weight (1..10000, default 100)."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


class CgroupV2:
    """One container's cgroup on a cgroup2 mount (see the module docstring)."""

    version = 2
    __slots__ = ("_mount", "_parent_dir", "_shared", "name", "path")

    def __init__(self, container_id: str, parent: str = "rade", mount: str = "/sys/fs/cgroup") -> None:
        self.name = f"{parent}/{container_id}"
        self._shared = files.is_shared_parent(parent)
        self._mount = mount
        self._parent_dir = f"{mount}/{parent}"
        self.path = f"{self._parent_dir}/{container_id}"

    def paths(self) -> tuple[str, ...]:
        return (self.path,)

    def create(self) -> None:
        for attempt in range(5):
            try:
                if files.make_dir(self._parent_dir):
                    self._enable_controllers()
                files.make_container_dir(self.path)
                return
            except (FileNotFoundError, files.CgroupGone):
                # The shared parent was removed by another container's cleanup meanwhile; a removal
                # still under way shows as ENODEV until it is done.
                time.sleep(0.001 * attempt)
                continue
        raise CgroupError(f"cannot create cgroup {self.path}: its parent keeps disappearing")

    def _enable_controllers(self) -> None:
        offered = files.read(f"{self._mount}/cgroup.controllers", "").split()
        wanted = [c for c in WANTED if c in offered]
        if not wanted:
            return
        for where in (self._mount, self._parent_dir):
            enabled = files.read(f"{where}/cgroup.subtree_control", "").split()
            missing = [c for c in wanted if c not in enabled]
            if missing:
                files.write(f"{where}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def apply(self, limits: Limits) -> None:
        p = self.path
        if limits.cpus is not None:
            files.write(f"{p}/cpu.max", f"{max(1000, round(limits.cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        if limits.cpu_shares:  # 0 is Docker's "default weight"
            files.write(f"{p}/cpu.weight", shares_to_weight(limits.cpu_shares))
        if limits.cpuset_cpus is not None:
            files.write(f"{p}/cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            files.write(f"{p}/cpuset.mems", limits.cpuset_mems)
        if limits.memory is not None:
            files.write(f"{p}/memory.max", limits.memory)
            # As v1 and Docker: without memory_swap, as much swap as memory; v2 counts swap on its own.
            total = limits.memory_swap if limits.memory_swap is not None else 2 * limits.memory
            if os.path.exists(f"{p}/memory.swap.max"):
                swap = "max" if total < 0 else max(0, total - limits.memory)
                files.write(f"{p}/memory.swap.max", swap)
        if limits.pids is not None:
            files.write(f"{p}/pids.max", limits.pids if limits.pids > 0 else "max")

    def add(self, pid: int) -> None:
        files.write(f"{self.path}/cgroup.procs", pid)

    def self_join_files(self) -> None:
        # v2 moves whole processes through cgroup.procs only, and that move takes the kernel's
        # threadgroup lock whoever writes it; a child born in the cgroup (`directory_fd`) moves nowhere.
        return None

    def directory_fd(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise files.error_from(err, f"cannot open cgroup {self.path}: {err.strerror}") from None

    def procs(self) -> list[int]:
        return files.read_pids(f"{self.path}/cgroup.procs")

    def populated(self) -> bool:
        return files.read_keyed(f"{self.path}/cgroup.events").get("populated", 0) == 1

    def stats(self) -> CgroupStats:
        p = self.path
        current = files.read_int(f"{p}/memory.current")
        return CgroupStats(
            cpu_seconds=files.read_keyed(f"{p}/cpu.stat").get("usage_usec", 0) / 1e6,
            memory_current=current,
            # memory.peak arrived in Linux 5.19; before it the current value is all there is.
            memory_peak=files.read_int(f"{p}/memory.peak", current),
            pids=files.read_int(f"{p}/pids.current", len(self.procs())),
        )

    def oom_killed(self) -> bool:
        return files.read_keyed(f"{self.path}/memory.events").get("oom_kill", 0) > 0

    def kill_all(self) -> None:
        if not os.path.isdir(self.path):
            return
        if os.path.exists(f"{self.path}/cgroup.kill"):
            files.write(f"{self.path}/cgroup.kill", 1)
            return
        # Before Linux 5.14: freeze so nothing forks, kill each, thaw so the kills are delivered.
        files.write(f"{self.path}/cgroup.freeze", 1)
        deadline = time.monotonic() + 1.0
        while files.read_keyed(f"{self.path}/cgroup.events").get("frozen", 1) != 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        try:
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            files.write(f"{self.path}/cgroup.freeze", 0)

    def freeze(self) -> None:
        """Stop every process of the cgroup (`docker pause`): cgroup.freeze, then wait for the kernel's
        `frozen 1` in cgroup.events, which it signals with POLLPRI; CgroupError if that does not come."""
        import select

        self._exists()
        files.write(f"{self.path}/cgroup.freeze", 1)
        fd = os.open(f"{self.path}/cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            deadline = time.monotonic() + 5.0
            while True:
                if b"frozen 1" in os.pread(fd, 4096, 0):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                poller.poll(left * 1000)
        finally:
            os.close(fd)
        files.write(f"{self.path}/cgroup.freeze", 0)
        raise CgroupError(f"cgroup {self.path} did not freeze", "a process may be stuck in the kernel; try again")

    def thaw(self) -> None:
        self._exists()
        files.write(f"{self.path}/cgroup.freeze", 0)

    def is_frozen(self) -> bool:
        return files.read_keyed(f"{self.path}/cgroup.events").get("frozen", 0) == 1

    def _exists(self) -> None:
        if not os.path.isdir(self.path):
            raise CgroupError(f"cgroup {self.path} does not exist", "the container is not running")

    def remove(self) -> None:
        files.remove_dir(self.path, self._kill_quietly)
        if self._shared:
            files.remove_parent(self._parent_dir)

    def _kill_quietly(self) -> None:
        try:
            self.kill_all()
        except CgroupError:
            pass
