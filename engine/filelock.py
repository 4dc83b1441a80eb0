"""The inter-process lock every on-disk store of the engine takes: an flock on a lock file.

Containers, images, logins and the dev cluster's record are each read-modified-written by several rade
processes at once (two runs, a pull and an rmi, two logins); each writer holds an flock on a file beside
what it changes. An flock goes with its descriptor, so a process that dies holding one releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], shared: bool = False) -> Iterator[None]:
    """Hold an flock on `path` (created if missing, mode 0600) for the duration of the block: exclusive,
    or `shared` among readers. Released on exit, even on error."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def try_lock(path: str | os.PathLike[str], create: bool = True) -> int | None:
    """Take an exclusive flock on `path` without waiting: the descriptor that holds it (close it to
    release), or None when another process holds it. The file is made (mode 0600) unless `create` is
    False, where a missing one raises FileNotFoundError."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_held(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds an flock on `path` now (tested by taking and dropping it); a file
    that does not exist is held by no one."""
    try:
        fd = try_lock(path, create=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False
