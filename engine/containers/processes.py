"""`rade top`: the processes of a running container, found as the host processes that share its PID
namespace, with the columns `ps -ef` prints."""

from __future__ import annotations

import os
import pwd
import time

COLUMNS = ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")
_TICKS = os.sysconf("SC_CLK_TCK")


def _namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def pids_in_namespace_of(pid: int) -> list[int]:
    """Host pids of every process in the PID namespace `pid` is in (pid included), sorted."""
    target = _namespace(pid)
    if target is None:
        return []
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _namespace(int(name)) == target:
            out.append(int(name))
    return sorted(out)


def _boot_time() -> float:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def row(pid: int, boot: float, now: float) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    ppid, utime, stime, start = int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])
    cpu = (utime + stime) / _TICKS
    started = boot + start / _TICKS
    elapsed = max(now - started, 1e-9)
    stime_text = time.strftime("%H:%M", time.localtime(started))
    cpu_text = time.strftime("%H:%M:%S", time.gmtime(cpu))
    return (_user(uid), str(pid), str(ppid), str(int(100 * cpu / elapsed)), stime_text, "?", cpu_text,
            cmdline or f"[{comm}]")


def table(pid: int) -> list[tuple[str, ...]]:
    boot, now = _boot_time(), time.time()
    rows = [row(p, boot, now) for p in pids_in_namespace_of(pid)]
    return [r for r in rows if r is not None]
