"""Reading and writing cgroup control files, with errors that name the file and the value.

Files are opened without O_CREAT: a control file the kernel does not offer (a controller that is not
enabled, an older kernel) is reported as such instead of being created.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

from engine.errors import CgroupError


class CgroupGone(CgroupError):
    """The cgroup was removed while in use (gone, or ENODEV: its directory still there, the cgroup not): a
    shared parent whose last child another process was removing. Whoever makes a child under it again
    makes the parent again."""


def write(path: str, value: str | int) -> None:
    """Write one value to a control file."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(path)):
            raise CgroupGone(f"cgroup {os.path.dirname(path)} does not exist") from None
        raise CgroupError(f"cgroup file {path} does not exist",
                          "the controller it belongs to is not enabled or not mounted here") from None
    except OSError as err:
        raise error_from(err, f"cannot open {path}: {err.strerror}") from None
    try:
        os.write(fd, data)
    except OSError as err:
        raise error_from(err, f"cannot write {data.decode()!r} to {path}: {err.strerror}") from None
    finally:
        os.close(fd)


def read(path: str, default: str | None = None) -> str:
    """A control file's content; `default` if the file does not exist (when given), its cgroup gone too."""
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except FileNotFoundError:
        if default is not None:
            return default
        raise CgroupError(f"cgroup file {path} does not exist") from None
    except OSError as err:
        if err.errno == errno.ENODEV and default is not None:
            return default
        raise error_from(err, f"cannot read {path}: {err.strerror}") from None


def error_from(err: OSError, message: str) -> CgroupError:
    """The error for a failed cgroup file operation: CgroupGone when the cgroup went away meanwhile."""
    return CgroupGone(message) if err.errno == errno.ENODEV else CgroupError(message)


def read_int(path: str, default: int = 0) -> int:
    text = read(path, "").strip()
    if not text or text == "max":
        return default
    return int(text)


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file (memory.events, cpu.stat, memory.oom_control) as a dict; {} if missing."""
    result: dict[str, int] = {}
    for line in read(path, "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def read_pids(path: str) -> list[int]:
    return [int(p) for p in read(path, "").split()]


def make_dir(path: str) -> bool:
    """mkdir; True if it was made now, False if it existed."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise  # the parent vanished (removed by another container's cleanup): the caller retries
    except OSError as err:
        raise error_from(err, f"cannot create cgroup {path}: {err.strerror}") from None


def make_container_dir(path: str) -> None:
    """mkdir a container's own cgroup. One left empty by a crash is reused; one with processes in it
    belongs to a running container of the same id, and sharing it would let one's cleanup kill the other."""
    if not make_dir(path) and read_pids(f"{path}/cgroup.procs"):
        raise CgroupError(f"cgroup {path} already holds running processes",
                          "another container with this id is running; stop it or use another id")


def remove_dir(path: str, emptied: Callable[[], None], timeout: float = 5.0) -> None:
    """rmdir a cgroup, calling `emptied()` (kill what is in it) while the kernel says it is busy.

    Processes leave a cgroup a moment after SIGKILL, so EBUSY is retried until `timeout`.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    killed = False
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {err.strerror}",
                                  "processes may still be running in it") from None
        if not killed:
            emptied()
            killed = True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def is_shared_parent(parent: str) -> bool:
    """Whether a cgroup parent is a pool its containers share and the last of them removes (a top-level
    one, such as the default `rade`), rather than a nested one its maker keeps and removes itself (a node
    agent's task slice, whose counters it reads once the container's own cgroup is gone)."""
    return "/" not in parent.strip("/")


def remove_parent(path: str) -> None:
    """Remove a shared parent cgroup if it is now empty; another container still in it keeps it."""
    try:
        os.rmdir(path)
    except OSError:
        pass
