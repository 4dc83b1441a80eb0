"""Container cgroups: one `CgroupDriver` interface, a v1 and a v2 driver chosen by what the host mounts.

`open_cgroup(id)` returns the driver for this host: v2 when /sys/fs/cgroup is itself a cgroup2 mount
(most new clusters), v1 when the memory controller has a v1 hierarchy (older and hybrid hosts, this one),
and v2 on /sys/fs/cgroup/unified otherwise. Construction touches nothing; `create()` makes the cgroup.
"""

from __future__ import annotations

import os

from engine.cgroups.driver import DEFAULT_PARENT, NO_LIMITS, CgroupDriver, CgroupStats, Limits
from engine.cgroups.none import NoCgroup
from engine.cgroups.v1 import CgroupV1, hierarchies
from engine.cgroups.v2 import CgroupV2

__all__ = [
    "NO_LIMITS",
    "CgroupDriver",
    "CgroupStats",
    "CgroupV1",
    "CgroupV2",
    "Limits",
    "NoCgroup",
    "host_version",
    "open_cgroup",
]

CGROUP_ROOT = "/sys/fs/cgroup"


def host_version() -> int:
    """2 on a pure cgroup2 host, else 1 (v1 or hybrid: cpu and memory are on v1 hierarchies)."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return 2
    return 1 if "memory" in hierarchies() else 2


def open_cgroup(container_id: str, parent: str = DEFAULT_PARENT) -> CgroupDriver:
    """The driver for one container's cgroup on this host (nothing is created yet)."""
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return CgroupV2(container_id, parent, CGROUP_ROOT)
    if "memory" in hierarchies():
        return CgroupV1(container_id, parent)
    return CgroupV2(container_id, parent, f"{CGROUP_ROOT}/unified")
