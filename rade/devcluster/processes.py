"""The processes of a dev cluster: starting them detached, knowing them again, stopping them.

A PID alone may name another process by the time `down` runs (PIDs are reused), so a started process is
recorded with its start time and acted on only while both match; signals go through pidfds, which cannot
hit a newcomer. What an agent forked and left behind is found by the network namespace it lives in. The
processes are started detached (their own session, stdio to a log file) and are not daemons themselves.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Process:
    """A process `up` started: its PID and start time (clock ticks since boot) to know it again."""

    pid: int
    start_time: int
    log: str


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if there is no such process (or only its
    zombie, waiting for a parent to collect its status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def is_alive(proc: Process | None) -> bool:
    return proc is not None and start_time(proc.pid) == proc.start_time


def spawn(argv: list[str], log: Path) -> Process:
    """Start `argv` detached, its output appended to `log`."""
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                 close_fds=True)
    child.returncode = 0  # detached on purpose: no "still running" warning when this object goes
    started = start_time(child.pid)
    return Process(child.pid, started if started is not None else -1, str(log))


def stop_process(proc: Process | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; only if it is still the process that was started."""
    if not is_alive(proc):
        return
    assert proc is not None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    try:
        if not is_alive(proc):
            return
        os.kill(proc.pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    try:
        os.waitpid(proc.pid, os.WNOHANG)  # when the caller started it (tests do): collect its status
    except ChildProcessError:
        pass


def netns_inode(netns: str) -> tuple[int, int] | None:
    """The identity (device, inode) of a named network namespace; None when it does not exist."""
    try:
        st = os.stat(f"/run/netns/{netns}")
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def processes_in(namespace: tuple[int, int] | None) -> list[int]:
    """The PIDs of every process in a network namespace (by its identity from `netns_inode`)."""
    if namespace is None:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                st = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == namespace:
                found.append(int(entry.name))
    return found


def kill_processes_in(namespace: tuple[int, int] | None, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in the namespace (through pidfds: a reused PID is never hit) and wait for
    them; the PIDs killed."""
    killed = []
    for pid in processes_in(namespace):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) != namespace:
                continue  # gone and reused between the scan and the pidfd
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
            killed.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
        finally:
            os.close(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return killed
