"""`rade info`: what this machine offers containers, as found, never assumed: the cgroup driver and
version, whether the seccomp filter can be loaded, the storage root, the kernel, and the counts."""

from __future__ import annotations

import os
import platform
from typing import Any

from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore


def info(root: str) -> dict[str, Any]:
    from engine import seccomp
    from engine.cgroups import host_version

    version = host_version()
    records = ContainerStore(root).all()
    available, why = seccomp.availability()
    return {
        "Containers": len(records),
        "Running": sum(r.status is ContainerStatus.RUNNING for r in records),
        "Stopped": sum(r.status is ContainerStatus.EXITED for r in records),
        "Images": _image_count(root),
        "StorageDriver": "overlay",
        "StorageRoot": os.path.abspath(root),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": str(version),
        "Seccomp": f"available ({why})" if available else f"unavailable ({why})",
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "Architecture": platform.machine(),
        "CPUs": os.cpu_count(),
        "MemTotal": _mem_total(),
    }


def _image_count(root: str) -> int:
    try:
        from engine.images.store import ImageStore

        return len(ImageStore(root).images())
    except Exception:  # noqa: BLE001 - an unreadable image store is reported by the image commands
        return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _mem_total() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
