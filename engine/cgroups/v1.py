"""The cgroup v1 driver: one directory per controller hierarchy, `<mount>/<parent>/<id>`.

A container always joins memory (limit, swap, usage, OOM), cpuacct (CPU time) and freezer (`pause`, and
kill-all: freeze, SIGKILL each pid, thaw, so nothing forks between reading the pids and killing them); it joins
cpu, cpuset and pids only when a limit needs them. Why not all: moving a pid between v1 cgroups waits
for an RCU grace period (writes in one burst share it, but a loaded host stretches it to milliseconds),
and a hierarchy with no limit set would change nothing. Without a freezer hierarchy, kill_all repeats
kill passes until the cgroup is empty. Hierarchies are found in
/proc/self/mountinfo, so co-mounted controllers ("cpu,cpuacct") share one directory. A new cpuset cgroup starts with no CPUs, so the shared parent copies its CPUs and memory
nodes from the hierarchy root once and sets clone_children, letting each container inherit them without
extra writes. The root cgroups are never written to.
"""

from __future__ import annotations

import os
import signal
import time
from functools import lru_cache

from engine.cgroups import files
from engine.cgroups.driver import CgroupStats, Limits
from engine.errors import CgroupError

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer")
ALWAYS = ("memory", "cpuacct", "freezer")
CFS_PERIOD_US = 100_000


@lru_cache(maxsize=1)
def hierarchies() -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy, from /proc/self/mountinfo."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] != "cgroup":
                continue
            options = fields[sep + 3].split(",")
            for controller in CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, fields[4])
    return found


def joined_controllers(limits: Limits) -> tuple[str, ...]:
    """The controllers a container with these limits is in (the rest would hold no limit of its own)."""
    wanted = list(ALWAYS)
    if limits.cpus is not None or limits.cpu_shares:
        wanted.append("cpu")
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        wanted.append("cpuset")
    if limits.pids is not None:
        wanted.append("pids")
    return tuple(wanted)


class CgroupV1:
    """One container's cgroups in the v1 hierarchies (see the module docstring)."""

    version = 1
    __slots__ = ("_dirs", "_id", "_joined", "_mounts", "_parent", "name")

    def __init__(self, container_id: str, parent: str = "rade", mounts: dict[str, str] | None = None) -> None:
        self.name = f"{parent}/{container_id}"
        self._parent = parent
        self._id = container_id
        self._mounts = mounts if mounts is not None else hierarchies()
        self._dirs = {c: f"{m}/{parent}/{container_id}" for c, m in self._mounts.items()}
        self._joined: list[str] = []  # the directories made by this object, in order

    def paths(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._dirs.values()))

    def _dir(self, controller: str) -> str:
        try:
            return self._dirs[controller]
        except KeyError:
            raise CgroupError(f"the {controller} cgroup controller is not mounted",
                              "mount it, or run without the limits that need it") from None

    def create(self) -> None:
        for controller in ALWAYS:
            if controller in self._dirs:
                self._join(controller)

    def _join(self, controller: str) -> str:
        """Make this container's directory in one hierarchy (once); its path."""
        path = self._dir(controller)
        if path in self._joined:
            return path
        for attempt in range(5):
            try:
                # Outside cpuset (whose parent may need filling) the parent is made only when it is
                # missing: it nearly always exists, and a node makes several of these for every task.
                if controller == "cpuset" or attempt:
                    self._ensure_parent(controller, self._mounts[controller])
                files.make_container_dir(path)
                if controller == "cpuset":
                    # Made while the parent was still empty, it inherited nothing through clone_children.
                    _fill_cpuset(path, os.path.dirname(path))
                break
            except (FileNotFoundError, files.CgroupGone):
                # The shared parent was removed by another container's cleanup meanwhile; a removal
                # still under way shows as ENODEV until it is done.
                time.sleep(0.001 * attempt)
                continue
        else:
            raise CgroupError(f"cannot create cgroup {path}: its parent keeps disappearing")
        self._joined.append(path)
        return path

    def _ensure_parent(self, controller: str, mount: str) -> None:
        parent = f"{mount}/{self._parent}"
        created = files.make_dir(parent)
        if controller == "cpuset":
            # A v1 cpuset is born with no CPUs, and one with no CPUs refuses every child's (EACCES). The
            # process that made the parent may not have filled it yet, or another's cleanup removed it and a
            # third made it again: fill it whenever it is empty, not only when this process made it.
            _fill_cpuset(parent, mount, force=created)

    def apply(self, limits: Limits) -> None:
        if limits.cpus is not None:
            cpu = self._join("cpu")
            files.write(f"{cpu}/cpu.cfs_period_us", CFS_PERIOD_US)
            files.write(f"{cpu}/cpu.cfs_quota_us", max(1000, round(limits.cpus * CFS_PERIOD_US)))
        if limits.cpu_shares:  # 0 is Docker's "default weight"
            files.write(f"{self._join('cpu')}/cpu.shares", limits.cpu_shares)
        if limits.cpuset_cpus is not None:
            files.write(f"{self._join('cpuset')}/cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            files.write(f"{self._join('cpuset')}/cpuset.mems", limits.cpuset_mems)
        if limits.memory is not None:
            memory = self._join("memory")
            files.write(f"{memory}/memory.limit_in_bytes", limits.memory)
            swap = limits.memory_swap if limits.memory_swap is not None else 2 * limits.memory
            # memsw exists only with swap accounting; without it there is no swap limit to set.
            if os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):
                files.write(f"{memory}/memory.memsw.limit_in_bytes", swap)
        if limits.pids is not None:
            files.write(f"{self._join('pids')}/pids.max", limits.pids if limits.pids > 0 else "max")

    def add(self, pid: int) -> None:
        # A driver opened afresh (to exec into a running container) joins what exists.
        for path in self._joined or [p for p in self.paths() if os.path.isdir(p)]:
            files.write(f"{path}/cgroup.procs", pid)

    def self_join_files(self) -> tuple[int, ...]:
        # A thread moving itself through `tasks` is the one move that skips the write side of the
        # kernel's global threadgroup lock, which waits an RCU grace period (5-15 ms on this kind of
        # host, a loaded one longer); a single-threaded process moving its only thread moves itself.
        fds: list[int] = []
        try:
            for path in self._joined or [p for p in self.paths() if os.path.isdir(p)]:  # as `add`
                fds.append(os.open(f"{path}/tasks", os.O_WRONLY | os.O_CLOEXEC))
        except OSError as err:
            for fd in fds:
                os.close(fd)
            raise files.error_from(err, f"cannot open {err.filename}: {err.strerror}") from None
        return tuple(fds)

    def directory_fd(self) -> None:
        return None

    def procs(self) -> list[int]:
        return files.read_pids(f"{self._dirs.get('memory', '/nonexistent')}/cgroup.procs")

    def stats(self) -> CgroupStats:
        memory = self._dirs.get("memory", "/nonexistent")
        return CgroupStats(
            cpu_seconds=files.read_int(f"{self._dirs.get('cpuacct', '/nonexistent')}/cpuacct.usage") / 1e9,
            memory_current=files.read_int(f"{memory}/memory.usage_in_bytes"),
            memory_peak=files.read_int(f"{memory}/memory.max_usage_in_bytes"),
            pids=files.read_int(f"{self._dirs.get('pids', '/nonexistent')}/pids.current", len(self.procs())),
        )

    def oom_killed(self) -> bool:
        memory = self._dirs.get("memory")
        if memory is None:
            return False
        control = files.read_keyed(f"{memory}/memory.oom_control")
        if "oom_kill" in control:
            return control["oom_kill"] > 0
        # Kernels before 4.13 do not count kills; hitting the limit is the best evidence left.
        return files.read_int(f"{memory}/memory.failcnt") > 0

    def kill_all(self) -> None:
        freezer = self._dirs.get("freezer")
        frozen = False
        if freezer is not None and os.path.isdir(freezer):
            files.write(f"{freezer}/freezer.state", "FROZEN")
            deadline = time.monotonic() + 1.0
            while files.read(f"{freezer}/freezer.state", "FROZEN").strip() != "FROZEN":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
            frozen = True
        try:
            for _ in range(1000):
                pids = self.procs()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if frozen:
                    break  # frozen processes cannot fork: one pass reaches them all
        finally:
            if frozen:
                files.write(f"{freezer}/freezer.state", "THAWED")

    def freeze(self) -> None:
        """Stop every process of the cgroup (`docker pause`); CgroupError if it is not frozen in time."""
        freezer = self._freezer()
        for _ in range(3):
            # FREEZING may stick while a task is in an uninterruptible sleep: runc writes FROZEN again.
            files.write(f"{freezer}/freezer.state", "FROZEN")
            deadline = time.monotonic() + 2.0
            delay = 0.0005
            while time.monotonic() < deadline:
                if files.read(f"{freezer}/freezer.state").strip() == "FROZEN":
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        files.write(f"{freezer}/freezer.state", "THAWED")
        raise CgroupError(f"cgroup {freezer} did not freeze", "a process may be stuck in the kernel; try again")

    def thaw(self) -> None:
        files.write(f"{self._freezer()}/freezer.state", "THAWED")

    def is_frozen(self) -> bool:
        return files.read(f"{self._freezer()}/freezer.state", "THAWED").strip() == "FROZEN"

    def _freezer(self) -> str:
        if "freezer" not in self._dirs:
            raise CgroupError("the freezer cgroup controller is not mounted here",
                              "pausing needs it: mount a v1 freezer hierarchy, or use a cgroup v2 host")
        path = self._dirs["freezer"]
        if not os.path.isdir(path):
            raise CgroupError(f"cgroup {path} does not exist", "the container is not running")
        return path

    def remove(self) -> None:
        for path in self.paths():
            files.remove_dir(path, self._kill_quietly)
        if files.is_shared_parent(self._parent):
            for mount in dict.fromkeys(self._mounts.values()):
                files.remove_parent(f"{mount}/{self._parent}")

    def _kill_quietly(self) -> None:
        try:
            self.kill_all()
        except CgroupError:
            pass


def _fill_cpuset(path: str, source: str, force: bool = False) -> None:
    """Give a v1 cpuset the CPUs and memory nodes of `source` (its parent) where it has none yet."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if force or not files.read(f"{path}/{name}", "").strip():
            files.write(f"{path}/{name}", files.read(f"{source}/{name}").strip() or "\n")
    if force:
        files.write(f"{path}/cgroup.clone_children", 1)
