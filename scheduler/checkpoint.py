"""Copying the state database's WAL into its main file from a thread of its own (SQLite's checkpoint).

In WAL mode a commit appends pages to the WAL; from time to time those pages must be copied into the
database file and the WAL started over. SQLite does that itself inside the commit that crosses the limit
(every 1,000 pages by default), so one commit in a few hundred took milliseconds, and for a client
submitting one job at a time that was a sixth of all the daemon's commit time. Here a thread with its own
connection does it every moment instead, while the daemon's thread goes on committing: a PASSIVE
checkpoint never blocks a writer, and the sqlite3 module lets go of the GIL while SQLite works. The
daemon's connection keeps a limit of its own, far higher, so the WAL stays bounded even if this thread
falls behind: the checkpoint it then runs finds most pages copied already. Only with `synchronous:
normal`: with `full` each commit fsyncs the WAL, and this thread's fsyncs beside them slowed those down.

Nothing here changes what is durable when: a commit is in the WAL before the daemon acts on it, as
before; a checkpoint only moves committed pages, and SQLite recovers from a death in the middle of one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

EVERY = 0.1  # seconds between checkpoints: at 2,000 commits a second, a few hundred pages each
WRITER_LIMIT = 4000  # pages the daemon's own connection lets the WAL reach before it checkpoints itself


class Checkpointer:
    """A thread that checkpoints the database at `path` every `every` seconds until `stop()`."""

    def __init__(self, path: str, every: float = EVERY) -> None:
        self.path = path
        self.every = every
        self.runs = 0
        self._stopping = threading.Event()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(target=self._loop, name="checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def run_once(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: (pages in the WAL, pages of it now in the database file)."""
        _busy, wal, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        return wal, copied

    def _loop(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                self.run_once()
            except sqlite3.Error as err:
                # The daemon's own connection still checkpoints at its limit: log it and keep going.
                log.warning("checkpoint of %s failed: %s", self.path, err)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._db.close()
