"""Running a process inside a running container (`rade exec`, and the MPI rsh agent's remote start).

    enter(pid, cgroup, config, argv, env=None, cwd=None, tty=False, stdin=0, stdout=1, stderr=2)
        -> EnteredProcess (.pid, .wait(), .poll(), .kill(sig))

`pid` is `ContainerProcess.pid`: the host pid of the container's PID 1, or for a rootless container the
process holding its user namespace (PID 1 is its child; the user namespace is joined first). `config` is
the LaunchConfig it was launched with (for its user, capabilities, no_new_privs and seccomp, which the
new process gets too). The process forked here is born in the container's cgroup (v2) or joins it
while host paths are still visible, then each namespace (mount last: it changes the root and working
directory to the container's), and from there runs the same final steps as the launch (stdio,
no_new_privs, capabilities and user, workdir, seccomp) before acting as a small init for the command: the command runs in the container's PID namespace, and this process, outside it,
forwards signals and exits with the command's status, so the caller can wait on it like any child.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace

from engine import child_errors, init, launch
from engine.cgroups import CgroupDriver, join_self
from engine.clone3 import fork_in
from engine.errors import LaunchError
from engine.launch_config import LaunchConfig
from engine.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    LINUX,
    Syscalls,
)

# Mount last: after it, /proc/<pid>/ns paths would be the container's, and the root is the container's.
NAMESPACES = (("cgroup", CLONE_NEWCGROUP), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
              ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))

FINAL_STEPS = tuple(s for s in launch.STEPS if s[0] in (
    "set up stdio", "no_new_privs", "drop capabilities and switch user", "enter workdir", "seccomp filter"))


class EnteredProcess:
    """A process started in a container; a child of the caller, which waits on it."""

    __slots__ = ("_status", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status: int | None = None

    def wait(self) -> int:
        if self._status is None:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self._status = 128 - code if code < 0 else code
        return self._status

    def poll(self) -> int | None:
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                self._status = 128 - code if code < 0 else code
        return self._status

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self._status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def _open_namespaces(pid: int, rootless: bool) -> list[tuple[int, int]]:
    fds = []
    try:
        if rootless:
            # `pid` holds the user namespace from outside; the container's PID 1 is its only child.
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pid = int(f.read().split()[0])
            # The user namespace first: it is the one that grants the rights to join the others.
            fds.append((os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC), CLONE_NEWUSER))
        for name, flag in NAMESPACES:
            fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
    except (OSError, ValueError, IndexError) as err:
        for fd, _ in fds:
            os.close(fd)
        raise LaunchError("enter container", f"cannot open the namespaces of pid {pid}: "
                          f"{getattr(err, 'strerror', None) or err}", "is the container running?") from None
    return fds


def enter(pid: int, cgroup: CgroupDriver | None, config: LaunchConfig, argv: tuple[str, ...],
          env: dict[str, str] | None = None, cwd: str | None = None, tty: bool = False, stdin: int = 0,
          stdout: int = 1, stderr: int = 2, sys: Syscalls = LINUX) -> EnteredProcess:
    """Start `argv` inside the running container whose PID 1 is `pid`; returns once it is exec'ed."""
    exec_config = _exec_config(config, argv, env, cwd, tty, stdin, stdout, stderr)
    plan = launch.make_plan(exec_config, sys)
    namespaces = _open_namespaces(pid, plan.rootless)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    plan.err_fd = err_w
    try:
        # A v2 cgroup takes the child at its birth; otherwise the child joins it first thing.
        into = cgroup.directory_fd() if cgroup is not None else None
        try:
            child, born_inside = fork_in(into)
        finally:
            if into is not None:
                os.close(into)
        if child == 0:
            os.close(err_r)
            _child(plan, namespaces, None if born_inside else cgroup)
        os.close(err_w)
        err_w = -1
        process = EnteredProcess(child)
        failure = child_errors.read_all(err_r)
        if failure:
            process.wait()
            raise child_errors.error_from(failure)
        return process
    finally:
        for fd in (err_r, err_w, *(fd for fd, _ in namespaces)):
            if fd >= 0:
                os.close(fd)


def _exec_config(config: LaunchConfig, argv: tuple[str, ...], env: dict[str, str] | None, cwd: str | None,
                 tty: bool, stdin: int, stdout: int, stderr: int) -> LaunchConfig:
    return replace(config, argv=tuple(argv), env=dict(config.env) if env is None else env,
                   cwd=cwd or config.cwd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)


def _child(plan: launch.Plan, namespaces: list[tuple[int, int]], cgroup: CgroupDriver | None) -> None:
    step = "join the cgroup"
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        if cgroup is not None:
            join_self(cgroup)
        step = "join namespaces"
        for fd, flag in namespaces:
            plan.sys.setns(fd, flag)
        for step, run in FINAL_STEPS:
            run(plan)
        init.run(plan.config.argv, plan.env, plan.config.tty, plan.err_fd)
    except LaunchError as err:
        child_errors.report_launch_error(plan.err_fd, err)
    except BaseException as err:  # noqa: BLE001 - the child must never return into the caller's code
        child_errors.report(plan.err_fd, child_errors.KIND_LAUNCH, step, f"{type(err).__name__}: {err}")
    os._exit(125)
