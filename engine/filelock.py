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
