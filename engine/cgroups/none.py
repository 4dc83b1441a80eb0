"""The cgroup driver for a container without a cgroup: a rootless launch, where the user may not create
cgroups. It accepts no limits (a limit it could not enforce is refused, never ignored) and reports zeros."""

from __future__ import annotations

from engine.cgroups.driver import NO_LIMITS, CgroupStats, Limits
from engine.errors import CgroupError


class NoCgroup:
    """No cgroup at all; every operation is a no-op except refusing limits."""

    version = 0
    __slots__ = ("name",)

    def __init__(self, container_id: str) -> None:
        self.name = f"(none)/{container_id}"

    def create(self) -> None:
        pass

    def apply(self, limits: Limits) -> None:
        if limits != NO_LIMITS:
            raise CgroupError("resource limits need a cgroup, and a container started without root has none",
                              "run as root, or without --cpus/--memory/--pids-limit")

    def add(self, pid: int) -> None:
        pass

    def self_join_files(self) -> tuple[int, ...]:
        return ()

    def directory_fd(self) -> None:
        return None

    def procs(self) -> list[int]:
        return []

    def stats(self) -> CgroupStats:
        return CgroupStats(cpu_seconds=0.0, memory_current=0, memory_peak=0, pids=0)

    def oom_killed(self) -> bool:
        return False

    def kill_all(self) -> None:
        pass

    def freeze(self) -> None:
        raise CgroupError("pausing needs the cgroup freezer, and a container started without root has no cgroup",
                          "run it as root to be able to pause it")

    def thaw(self) -> None:
        pass

    def is_frozen(self) -> bool:
        return False

    def remove(self) -> None:
        pass

    def paths(self) -> tuple[str, ...]:
        return ()
