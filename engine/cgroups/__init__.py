"""Container cgroups: one `CgroupDriver` interface, a v1 and a v2 driver chosen by what the host mounts.

`open_cgroup(id)` returns the driver for this host: v2 when /sys/fs/cgroup is itself a cgroup2 mount
(most new clusters), v1 when the memory controller has a v1 hierarchy (older and hybrid hosts, this one),
and v2 on /sys/fs/cgroup/unified otherwise. Construction touches nothing; `create()` makes the cgroup.
"""

from __future__ import annotations

import os

from engine.cgroups.driver import DEFAULT_PARENT, NO_LIMITS, CgroupDriver, CgroupStats, Limits
from engine.cgroups.none import NoCgroup
from engine.cgroups.v1 import CgroupV1, hierarchies, joined_controllers
from engine.cgroups.v2 import CgroupV2

__all__ = [
    "NO_LIMITS",
    "CgroupDriver",
    "CgroupStats",
    "CgroupV1",
    "CgroupV2",
    "Limits",
    "NoCgroup",
    "container_view",
    "host_version",
    "join_self",
    "join_through",
    "open_cgroup",
]

CGROUP_ROOT = "/sys/fs/cgroup"


def host_version() -> int:
    """2 on a pure cgroup2 host, else 1 (v1 or hybrid: cpu and memory are on v1 hierarchies)."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return 2
    return 1 if "memory" in hierarchies() else 2


def container_view(limits: Limits) -> tuple[tuple[str, str], ...]:
    """What to mount on the container's /sys/fs/cgroup (inside its cgroup namespace) so that it sees its
    own cgroups read-only, as Docker shows them: (subdirectory, mount options) for each v1 hierarchy the
    container is in, ("", "") for one cgroup2 mount on a v2 host, nothing on a hybrid host's cgroup2."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return (("", ""),)
    mounts = hierarchies()
    if "memory" not in mounts:
        return ()
    view: dict[str, str] = {}
    for controller in joined_controllers(limits):
        if controller in mounts:
            point = mounts[controller]
            # Co-mounted controllers ("cpu,cpuacct") are one hierarchy, mounted with all their names.
            view[os.path.basename(point)] = ",".join(c for c, m in mounts.items() if m == point)
    return tuple(view.items())


def open_cgroup(container_id: str, parent: str = DEFAULT_PARENT) -> CgroupDriver:
    """The driver for one container's cgroup on this host (nothing is created yet)."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return CgroupV2(container_id, parent, CGROUP_ROOT)
    if "memory" in hierarchies():
        return CgroupV1(container_id, parent)
    return CgroupV2(container_id, parent, f"{CGROUP_ROOT}/unified")


def join_self(cgroup: CgroupDriver) -> None:
    """Move the calling process into `cgroup`. For a single-threaded process (a child just forked) only:
    with v1 it moves its one thread itself, the move that does not wait for the kernel's RCU grace
    period (see `CgroupDriver.self_join_files`); otherwise by pid."""
    fds = cgroup.self_join_files()
    if fds is None:
        cgroup.add(os.getpid())
    else:
        join_through(fds)


def join_through(fds: tuple[int, ...]) -> None:
    """Join a cgroup through the files of `CgroupDriver.self_join_files` (the calling process must have one
    thread), closing them."""
    try:
        for fd in fds:
            os.write(fd, b"0")
    finally:
        for fd in fds:
            os.close(fd)
