"""The checkpoint thread: committed pages reach the database file without the daemon's commits copying
them, and stopping it leaves a database that opens with every committed job."""

from __future__ import annotations

import shutil
import sqlite3

from scheduler.checkpoint import Checkpointer
from scheduler.store import Store

from .conftest import Harness, spec


def test_a_checkpoint_copies_committed_jobs_into_the_database_file(tmp_path, clock):
    path = str(tmp_path / "s.db")
    h = Harness(path, clock)
    h.store.checkpoint_at(100_000)  # the writer never checkpoints by itself here
    checkpointer = Checkpointer(path)
    try:
        ids = [job for _ in range(50) for job in h.state.submit(spec(), "alice")]
        h.commit()
        wal, copied = checkpointer.run_once()
        assert wal > 0 and copied == wal
        # The main file alone, without its WAL, now holds every job: the pages were copied into it.
        shutil.copy(path, tmp_path / "copy.db")
        db = sqlite3.connect(str(tmp_path / "copy.db"))
        try:
            assert [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY id")] == ids
        finally:
            db.close()
    finally:
        checkpointer.stop()
        h.store.close()


def test_the_thread_checkpoints_while_jobs_are_committed_and_stops_when_told(tmp_path, clock):
    path = str(tmp_path / "s.db")
    h = Harness(path, clock)
    checkpointer = Checkpointer(path, every=0.01)
    checkpointer.start()
    try:
        ids = []
        for _ in range(200_000):  # a bound, not a timing: it ends once the thread has run a few times
            ids += h.state.submit(spec(), "alice")
            h.commit()
            if checkpointer.runs >= 3:
                break
    finally:
        checkpointer.stop()
    assert checkpointer.runs >= 3 and not checkpointer.running
    h.store.close()
    store = Store(path)
    try:
        assert [job.id for job in store.load().jobs] == ids
    finally:
        store.close()
