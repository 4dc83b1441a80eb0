"""Deleting ended tasks' container files off the agent's loop.

The agent takes a container out of the store in one rename (`lifecycle.remove_stopped` without purge),
which frees it at once; deleting its files takes the file system a while, which the loop need not wait
for to report the next end or start the next task. What a killed agent leaves undeleted, the next
container's creation deletes (`ContainerStore`).
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.containers.store import ContainerStore


class Purger:
    """Deletes retired containers' files on a thread of its own, started at the first `put` (so after
    the launcher's fork, which must happen while the agent has no threads)."""

    def __init__(self, store: ContainerStore) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Path, int] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def put(self, path: Path) -> None:
        """Delete the retired container directory `path` soon."""
        # Its supervisor lock held until the files are gone, so a creation meanwhile leaves them to us;
        # never waited for: the loop must not block, and deleting twice does no harm.
        try:
            fd = os.open(path / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return  # deleted already
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="purge", daemon=True)
            self.thread.start()
        self.queue.put((path, fd))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            path, fd = item
            try:
                self.store.purge(path)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Delete what is queued, then stop the thread."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
