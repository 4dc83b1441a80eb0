"""Deleting ended tasks' container files and cgroups off the agent's loop.

The agent takes a container out of the store in one rename (`lifecycle.retire_exited`), which frees it
at once; deleting its files and removing the task's cgroup slice takes the kernel a while (a memory
cgroup going offline, an overlay's upper directory), which the loop need not wait for to report the next
end or start the next task. What a killed agent leaves undeleted, the next container's creation deletes
(`ContainerStore`), and the next agent's `stop_leftovers` or the dev cluster's `down` removes the slices.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.containers.store import ContainerStore

log = logging.getLogger(__name__)


class Purger:
    """Deletes retired containers' files on a thread of its own, started at the first `put` (so after
    the launcher's fork, which must happen while the agent has no threads)."""

    def __init__(self, store: ContainerStore) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Path, int, Callable[[], None] | None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def put(self, path: Path, lock_fd: int, then: Callable[[], None] | None = None) -> None:
        """Delete the retired container directory `path` soon, then close `lock_fd` (its supervisor lock,
        held meanwhile so a creation leaves the files to us), then call `then` (the rest of the task's
        clean-up)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="purge", daemon=True)
            self.thread.start()
        self.queue.put((path, lock_fd, then))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            path, fd, then = item
            try:
                self.store.purge(path)
            finally:
                os.close(fd)
            if then is not None:
                try:
                    then()
                except Exception:  # logged; the next task's clean-up still runs
                    log.exception("cleaning up after a task")

    def close(self) -> None:
        """Delete what is queued, then stop the thread."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
