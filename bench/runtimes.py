"""What the benchmarks that race rade against other container runtimes (crun, runc, podman) share: the
busybox root every column runs, and podman's private store with the cgroups it leaves behind.

Each benchmark is a script run from bench/ (its directory is first on sys.path), so this module is found
beside it. It owns only setup and cleanup; timing and tables stay in each benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"
# podman asks for rlimits above the hard limits of a host whose root lacks CAP_SYS_RESOURCE (nofile 1048576
# against 20000) and its start fails: every run asks for what such a host allows.
PODMAN_ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


def busybox_root(layer: str) -> str:
    """A root at `layer` of the host's static busybox, one applet a symlink, with the directories a container
    mounts over (/proc, /sys, /dev, /tmp ...); returns `layer`."""
    os.makedirs(f"{layer}/bin", exist_ok=True)
    shutil.copy2(BUSYBOX, f"{layer}/bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            os.symlink("busybox", f"{layer}/bin/{applet}")
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(f"{layer}/{d}", exist_ok=True)
    return layer


def podman_args(base: str) -> list[str]:
    """`podman` with a private store under `base` (nothing of the host's own images or containers is
    touched), runc, cgroupfs and no event log: the global options of every podman call of a benchmark."""
    return ["podman", "--root", f"{base}/podman-root", "--runroot", f"{base}/podman-run", "--runtime", "runc",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none"]


def podman_cgroups() -> set[str]:
    return {f"/sys/fs/cgroup/{c}/libpod_parent" for c in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(f"/sys/fs/cgroup/{c}/libpod_parent")}


def remove_podman_cgroups(before: set[str]) -> None:
    """podman (cgroupfs manager) leaves libpod_parent/conmon behind: remove what this run made."""
    for path in podman_cgroups() - before:
        for leaf in (f"{path}/conmon", path):
            try:
                os.rmdir(leaf)
            except OSError:
                pass
