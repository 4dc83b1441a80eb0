"""fork() with the child born inside a cgroup v2 directory: clone3 with CLONE_INTO_CGROUP (Linux 5.7).

Why: moving a process into a cgroup by writing its pid to `cgroup.procs` takes the write side of the
kernel's threadgroup lock, which waits for an RCU grace period (milliseconds, more on a loaded host), on
every container start. A child created in its cgroup moves nowhere. v1 has no such call; there the child
moves itself through `tasks` (`CgroupDriver.self_join_files`).

Python 3.11 has no `os.clone3`, so this is the raw system call through ctypes, wrapped exactly as
`os.fork()` wraps fork(): `PyOS_BeforeFork` first, then `PyOS_AfterFork_Child` in the child and
`PyOS_AfterFork_Parent` in the parent, all with the GIL held (`ctypes.pythonapi` is a PyDLL). glibc's
own fork bookkeeping (its atfork handlers, its lock resets) is skipped, which is only safe in a process
with one thread: the launch's rule already ("fork happens before any thread").
"""

from __future__ import annotations

import ctypes
import os
import signal

SYS_CLONE3 = 435  # x86_64 and aarch64 alike (the generic syscall table)
CLONE_INTO_CGROUP = 0x200000000


class CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h), up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


_api = ctypes.PyDLL(None, use_errno=True)
_api.syscall.restype = ctypes.c_long
_api.syscall.argtypes = [ctypes.c_long, ctypes.POINTER(CloneArgs), ctypes.c_size_t]
_api.PyOS_BeforeFork.restype = _api.PyOS_AfterFork_Child.restype = _api.PyOS_AfterFork_Parent.restype = None


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), the child a member of the cgroup v2 directory open at `cgroup_fd` from its first instruction.
    Returns 0 in the child and its pid in the parent, as os.fork(); raises OSError (ENOSYS before Linux
    5.7, EBADF/EINVAL/EOPNOTSUPP for a descriptor that is no v2 cgroup) with nothing forked."""
    args = CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=cgroup_fd)
    _api.PyOS_BeforeFork()
    pid = _api.syscall(SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3 into a cgroup: {os.strerror(err)}")
    return pid


def fork_in(cgroup_fd: int | None) -> tuple[int, bool]:
    """os.fork(), the child born in the v2 cgroup open at `cgroup_fd` when one is given and the kernel can
    (before Linux 5.7, for a cgroup it cannot take, or in a process with threads, a plain fork: the caller
    then moves the child by pid). Returns (pid, whether the child was born in the cgroup); raises OSError as os.fork() does."""
    # A raw clone skips glibc's fork bookkeeping, which only a process of one thread can do without: a
    # caller with threads (any, C ones included, which `threading` does not count) forks as usual.
    if cgroup_fd is not None and len(os.listdir("/proc/self/task")) == 1:
        try:
            return fork_into_cgroup(cgroup_fd), True
        except OSError:
            pass
    return os.fork(), False
