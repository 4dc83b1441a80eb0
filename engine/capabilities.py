"""Linux capabilities by name, Docker's default set, and dropping them in the container's PID 1.

`resolve()` turns the config's "default" or set of names into a bit mask in the parent (once, before
fork); `drop()` runs in the child: it shrinks the bounding set first (that needs CAP_SETPCAP, which is
itself about to go), keeps capabilities across the uid switch, switches uid/gid/groups, then sets the
effective and permitted sets. A non-root user ends with no capabilities after execve (its ambient set
is cleared), as with Docker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from engine.errors import LaunchError
from engine.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    Syscalls,
)

CAPABILITIES: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's (and Podman's, and containerd's) default for `run`: what ordinary images expect root to be
# able to do (chown files, bind low ports, setuid in entrypoints) without anything that reaches the host.
DOCKER_DEFAULT = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})


def last_cap() -> int:
    """The highest capability number this kernel knows (bits above it cannot be dropped)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def resolve(spec: str | Iterable[str]) -> int:
    """The bit mask for "default" or a set of names ("CAP_NET_ADMIN" or "net_admin"); "ALL" is every one."""
    names = DOCKER_DEFAULT if spec == "default" else spec
    if isinstance(names, str):
        names = (names,)
    mask = 0
    for raw in names:
        name = raw.upper().removeprefix("CAP_")
        if name == "ALL":
            return (1 << (max(CAPABILITIES.values()) + 1)) - 1
        if name not in CAPABILITIES:
            raise LaunchError("capabilities", f"unknown capability '{raw}'",
                              "use names such as CAP_NET_ADMIN or NET_ADMIN")
        mask |= 1 << CAPABILITIES[name]
    return mask


def names(mask: int) -> list[str]:
    """The CAP_ names of the bits in a mask, in number order."""
    return [f"CAP_{name}" for name, bit in sorted(CAPABILITIES.items(), key=lambda kv: kv[1])
            if mask >> bit & 1]


def drop(sys: Syscalls, mask: int, uid: int, gid: int, groups: tuple[int, ...], top: int,
         set_groups: bool = True) -> None:
    """Leave the calling process with exactly `mask` as uid/gid/groups; `top` is `last_cap()`.

    `set_groups` is False in a user namespace whose setgroups is denied (a rootless launch)."""
    for bit in range(top + 1):
        if not mask >> bit & 1:
            sys.prctl(PR_CAPBSET_DROP, bit)
    if uid != 0:
        sys.prctl(PR_SET_KEEPCAPS, 1)
    if set_groups:
        os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    sys.capset(mask, mask, 0)
    if uid != 0:
        sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
