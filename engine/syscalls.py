"""The one seam between the engine and the kernel calls Python 3.11's `os` lacks.

Everything privileged the launch does (namespaces, mounts, pivot_root, capabilities, prctl, hostname,
device nodes) goes through a `Syscalls` object. `LINUX` is the real one: thin ctypes calls into libc that
turn a failure into an `OSError` naming the call, its main argument and the errno text, so a launch step
can report "mount proc on /x/proc: Operation not permitted" instead of a bare errno. Tests pass a
recording fake with the same methods to check the order of mounts without root.

This module must not import anything heavy: it is loaded on the launch's hot path.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from typing import Protocol

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 0x2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

_ULONG = ctypes.c_ulong


class CapHeader(ctypes.Structure):
    """struct __user_cap_header_struct."""

    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    """struct __user_cap_data_struct; version 3 uses two of them (capabilities 0-31 and 32-63)."""

    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class Syscalls(Protocol):
    """The privileged calls the launch makes; each raises OSError (with errno) on failure."""

    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int) -> None: ...
    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None: ...
    def umount2(self, target: str, flags: int = 0) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def mknod(self, path: str, mode: int, device: int) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def capget(self) -> tuple[int, int, int]: ...
    def seccomp_filter(self, program: ctypes.Array | ctypes.Structure) -> None: ...


def _fs(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


class LinuxSyscalls:
    """The real kernel through libc; one instance (`LINUX`) is enough for a process."""

    __slots__ = ("_libc",)

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare.argtypes = [ctypes.c_int]
        libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, _ULONG, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.pivot_root.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        libc.prctl.argtypes = [ctypes.c_int, _ULONG, _ULONG, _ULONG, _ULONG]
        libc.capset.argtypes = [ctypes.POINTER(CapHeader), ctypes.POINTER(CapData)]
        libc.capget.argtypes = [ctypes.POINTER(CapHeader), ctypes.POINTER(CapData)]
        self._libc = libc

    @staticmethod
    def _fail(what: str) -> OSError:
        err = ctypes.get_errno()
        return OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        if self._libc.unshare(flags) != 0:
            raise self._fail(f"unshare({flags:#x})")

    def setns(self, fd: int, nstype: int) -> None:
        if self._libc.setns(fd, nstype) != 0:
            raise self._fail(f"setns({nstype:#x})")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        if self._libc.mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data)) != 0:
            raise self._fail(f"mount {fstype or source or ''} on {target}")

    def umount2(self, target: str, flags: int = 0) -> None:
        if self._libc.umount2(_fs(target), flags) != 0:
            raise self._fail(f"umount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        if self._libc.pivot_root(_fs(new_root), _fs(put_old)) != 0:
            raise self._fail(f"pivot_root {new_root}")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        if self._libc.sethostname(raw, len(raw)) != 0:
            raise self._fail(f"sethostname {name!r}")

    def mknod(self, path: str, mode: int, device: int) -> None:
        os.mknod(path, mode, device)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        result = self._libc.prctl(option, arg2, arg3, arg4, arg5)
        if result < 0:
            raise self._fail(f"prctl({option})")
        return result

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        data = (CapData * 2)(
            CapData(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF),
            CapData(effective >> 32, permitted >> 32, inheritable >> 32),
        )
        if self._libc.capset(ctypes.byref(header), data) != 0:
            raise self._fail("capset")

    def capget(self) -> tuple[int, int, int]:
        header = CapHeader(0x20080522, 0)
        data = (CapData * 2)()
        if self._libc.capget(ctypes.byref(header), data) != 0:
            raise self._fail("capget")
        return (data[0].effective | data[1].effective << 32,
                data[0].permitted | data[1].permitted << 32,
                data[0].inheritable | data[1].inheritable << 32)

    def seccomp_filter(self, program: ctypes.Array | ctypes.Structure) -> None:
        """Install a classic-BPF seccomp program (a `struct sock_fprog`); needs no_new_privs or CAP_SYS_ADMIN."""
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(program), 0, 0) != 0:
            raise self._fail("seccomp filter")


LINUX = LinuxSyscalls()


def bring_up_loopback() -> None:
    """Set `lo` up in the current network namespace (a new one starts with it down), by one ioctl."""
    siocsifflags, iff_up_loopback_running = 0x8914, 0x1 | 0x8 | 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sh22x", b"lo", iff_up_loopback_running))
