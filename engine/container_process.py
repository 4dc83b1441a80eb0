"""A launched container as its caller holds it: PID 1's process and its cgroup.

Returned by `engine.launch.launch()`. PID 1 (or, for a rootless container, the small process that holds
its user namespace and forwards to it) is a child of the launching process, so only that process can
wait for it; `cleanup()` is safe to repeat and after a failed launch.
"""

from __future__ import annotations

import os
import signal

from engine.cgroups import CgroupDriver, CgroupStats


class ContainerProcess:
    """A launched container: its PID 1 (a child of the launching process) and its cgroup."""

    __slots__ = ("_cleaned", "_status", "cgroup", "pid")

    def __init__(self, pid: int, cgroup: CgroupDriver) -> None:
        self.pid = pid
        self.cgroup = cgroup
        self._status: int | None = None
        self._cleaned = False

    def _record(self, status: int) -> int:
        code = os.waitstatus_to_exitcode(status)
        self._status = 128 - code if code < 0 else code
        return self._status

    def wait(self) -> int:
        """Block until PID 1 exits; its exit status (the command's, 128+N if killed by signal N)."""
        if self._status is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                # Reaped elsewhere (a SIGCHLD handler set to SIG_IGN): the status is lost.
                self._status = 255
                return self._status
            self._record(status)
        return self._status

    def poll(self) -> int | None:
        """The exit status if PID 1 has exited, else None."""
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid != 0:
                self._record(status)
        return self._status

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal PID 1, which forwards it to the command (SIGKILL ends the whole container)."""
        if self._status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stats(self) -> CgroupStats:
        return self.cgroup.stats()

    def oom_killed(self) -> bool:
        return self.cgroup.oom_killed()

    def cleanup(self) -> None:
        """Kill whatever is left, reap PID 1, remove the cgroup. Idempotent."""
        if self._cleaned:
            return
        if self._status is None:
            self.kill(signal.SIGKILL)
            self.wait()
        self.cgroup.remove()
        self._cleaned = True
