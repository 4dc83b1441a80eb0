"""What a container's cgroup is to the rest of rade: the limits it takes, the stats it gives, and the
`CgroupDriver` protocol both the v1 and the v2 driver implement.

A driver object is one container's cgroup (under a parent, "rade" by default). Its `remove()` works on a
cgroup that was never created or created half-way, and twice in a row, so every cleanup path can call it.
Nothing here touches the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.errors import CgroupError

DEFAULT_PARENT = "rade"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one container; None leaves the kernel's default (no limit).

    cpus: CPUs' worth of time per period (0.5 = half a CPU), by CFS quota/period.
    cpu_shares: relative weight as Docker's --cpu-shares (1024 = default); v2 maps it to cpu.weight.
    cpuset_cpus / cpuset_mems: kernel list syntax ("0-3,6").
    memory / memory_swap: bytes; memory_swap is memory + swap as Docker's --memory-swap (-1 = unlimited;
        None with a memory limit: twice the memory, as Docker).
    pids: the most tasks the container may have at once (0 or less: unlimited, as Docker reads it).
    Refused at construction, naming the rule: cpus not above 0, memory under 6 MiB (the container would
    be killed before its command runs, so Docker refuses it too), memory_swap below memory.
    """

    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory: int | None = None
    memory_swap: int | None = None
    pids: int | None = None

    def __post_init__(self) -> None:
        if self.cpus is not None and self.cpus <= 0:
            raise CgroupError(f"cpus {self.cpus} is not a CPU count", "use a number above 0, e.g. 0.5 or 2")
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise CgroupError(f"memory limit of {self.memory} bytes is below the minimum of 6M",
                              "use at least 6M")
        if self.memory_swap not in (None, -1) and self.memory is not None and self.memory_swap < self.memory:
            raise CgroupError("memory-swap must be at least memory (it counts memory plus swap)",
                              "use -1 for unlimited swap")


MIN_MEMORY = 6 * 1024 * 1024
NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """What a container has used: CPU seconds (user+system), memory now and at its peak, in bytes."""

    cpu_seconds: float
    memory_current: int
    memory_peak: int
    pids: int


class CgroupDriver(Protocol):
    """One container's cgroup. `version` is 1 or 2; `name` is "<parent>/<id>"."""

    version: int
    name: str

    def create(self) -> None:
        """Make the cgroup (and its parent if missing); raises CgroupError."""

    def apply(self, limits: Limits) -> None:
        """Write the limits; raises CgroupError naming the file and value refused."""

    def add(self, pid: int) -> None:
        """Move a process (and its future children) into the cgroup."""

    def self_join_files(self) -> tuple[int, ...] | None:
        """Files (open, close-on-exec; the caller closes them) that a single-threaded process joins the
        cgroup by, writing "0" to each itself; None when the driver has no such way and the process is
        moved by pid with `add`. Call after `create` and `apply`."""

    def directory_fd(self) -> int | None:
        """The cgroup's directory, open (close-on-exec; the caller closes it), for a child to be born in it
        (clone3's CLONE_INTO_CGROUP, engine.clone3); None where that cannot place a process (v1: one
        cgroup a hierarchy; no cgroup at all). Call after `create`."""

    def procs(self) -> list[int]:
        """The pids in the cgroup now."""

    def stats(self) -> CgroupStats: ...

    def oom_killed(self) -> bool:
        """True when the kernel's OOM killer killed a process of this cgroup."""

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, including ones forked while killing."""

    def freeze(self) -> None:
        """Stop every process in the cgroup until `thaw` (the freezer); returns once they are all frozen."""

    def thaw(self) -> None:
        """Let the frozen processes run again."""

    def is_frozen(self) -> bool: ...

    def remove(self) -> None:
        """Remove the cgroup (killing what is left); safe to repeat and after a failed create. A top-level
        parent goes with its last container; a nested one is left to its maker (`files.is_shared_parent`)."""

    def paths(self) -> tuple[str, ...]:
        """The cgroup directories this container has (one for v2, one per controller for v1)."""
