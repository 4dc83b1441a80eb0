"""The rootless launch: a user namespace that maps root in the container to the caller's own uid.

Without root the caller cannot unshare a PID namespace for its child (it would need CAP_SYS_ADMIN), so
the launch forks a small process that unshares a user and a PID namespace at once, maps its own uid
and gid (an unprivileged process may map exactly its own ids, once setgroups is denied), and forks
PID 1 of the container inside them. That process stays outside the container's PID namespace as its
parent: it forwards signals to PID 1 and exits with its status, and PID 1 is killed if it dies
(PR_SET_PDEATHSIG), so killing it ends the container.

A rootless container has no cgroup (limits are refused), can join no network namespace it does not own
(host or none only), and runs its command as root inside, which is the caller outside.
"""

from __future__ import annotations

import os
import signal

from engine import child_errors, init
from engine.syscalls import CLONE_NEWPID, CLONE_NEWUSER, PR_SET_PDEATHSIG, Syscalls


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def fork_in_user_namespace(sys: Syscalls, err_fd: int) -> int:
    """Fork; in the caller, the holder's pid; in PID 1 of the new namespaces, 0. The holder never returns."""
    uid, gid = os.geteuid(), os.getegid()
    holder = os.fork()
    if holder != 0:
        return holder
    step = "user namespace"
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        sys.unshare(CLONE_NEWUSER | CLONE_NEWPID)
        step = "map uid and gid"
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1\n")
        _write("/proc/self/gid_map", f"0 {gid} 1\n")
        step = "fork PID 1"
        child = os.fork()
    except OSError as err:
        child_errors.report(err_fd, child_errors.KIND_LAUNCH, step, f"{err.strerror or err}",
                    "check that unprivileged user namespaces are enabled (user.max_user_namespaces)")
        os._exit(125)
    if child == 0:
        sys.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        return 0
    # Only PID 1 and the command may hold the error pipe, so that end-of-file means "exec'ed".
    os.closerange(3, 1 << 20)
    os._exit(init.serve(child))
