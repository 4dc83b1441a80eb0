"""The values a launch takes: what to run, in which root, with which limits and privileges.

These are the seam between the launch (`engine.launch`) and its callers (the container lifecycle, the
node agent): plain frozen values, no behaviour beyond validating themselves, cheap to build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.cgroups.driver import DEFAULT_PARENT, NO_LIMITS, Limits

NETWORK_HOST = "host"
NETWORK_NONE = "none"
DEFAULT_CAPABILITIES = "default"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Mount:
    """A volume: `kind` "bind" (source is a host path) or "tmpfs" (source unused); target inside the
    container. `options` are extra data for tmpfs ("size=64m,mode=1777")."""

    source: str
    target: str
    read_only: bool = False
    kind: str = "bind"
    options: str = ""


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Everything `launch()` needs. Paths are host paths.

    lower_dirs: image layer directories, top layer first (overlayfs lowerdir order).
    upper_dir, work_dir, rootfs_dir: the overlay's upper and work dirs and its mount point, all inside
        the container's state dir (made if missing). `state_dir` names that dir for reference; the launch
        writes nothing there (the generated /etc files live on a tmpfs inside the container).
    network: "host", "none", or the path of a network namespace file to join (e.g. /run/netns/x).
    capabilities: "default" (Docker's default set) or an explicit set of names ("CAP_CHOWN" or "CHOWN");
        an empty set for cluster jobs.
    stdin/stdout/stderr: host file descriptors given to the command as 0, 1, 2; with `tty`, stdin is a
        pty slave: it becomes the command's controlling terminal and is bind-mounted on /dev/console.
    hosts/resolv_conf: file contents; None gives the host's /etc/hosts with host networking, else
        localhost plus the hostname, and the host's resolv.conf.
    Without root (a user namespace), uid, gid and groups must stay 0, 0, () and there are no limits.
    """

    container_id: str
    lower_dirs: tuple[str, ...]
    upper_dir: str
    work_dir: str
    rootfs_dir: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    hostname: str | None = None
    network: str = NETWORK_HOST
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    capabilities: str | frozenset[str] = DEFAULT_CAPABILITIES
    no_new_privs: bool = True
    nosuid: bool = False  # nosuid and nodev on the root and every bind volume (cluster jobs)
    seccomp: bool = True
    limits: Limits = NO_LIMITS
    cgroup_parent: str = DEFAULT_PARENT
    stdin: int = 0
    stdout: int = 1
    stderr: int = 2
    tty: bool = False
    hosts: str | None = None
    resolv_conf: str | None = None
    shm_size: int = DEFAULT_SHM_SIZE
    state_dir: str | None = None
