"""The state database: what is committed survives, what is not is gone, and a file it does not understand
is refused with a clear error rather than read wrongly."""

from __future__ import annotations

import sqlite3

import pytest

from jobs.states import JobState
from scheduler.records import Drain, NodeRecord
from scheduler.store import Store, StoreError

from .conftest import Harness, spec


def test_finished_jobs_nodes_and_drains_survive_a_restart(tmp_path, clock):
    h = Harness(str(tmp_path / "s.db"), clock)
    h.register("n1")
    h.state.drain("n1", "disk swap", 60)
    [job] = h.state.submit(spec(), "alice")
    h.state.cancel(job, "alice", admin=False)
    h.commit()
    h.restart()
    assert h.state.ended[job][0] is JobState.CANCELLED
    assert h.state.nodes["n1"].drain.reason == "disk swap"
    assert h.store.job(job)[0].state is JobState.CANCELLED
    h.store.close()


def test_uncommitted_changes_are_lost_and_ids_are_never_reused(tmp_path, clock):
    h = Harness(str(tmp_path / "s.db"), clock)
    [first] = h.state.submit(spec(), "alice")
    h.commit()
    h.state.submit(spec(), "alice")
    h.restart()
    assert list(h.state.jobs) == [first]
    [again] = h.state.submit(spec(), "alice")
    assert again == first + 1
    h.store.close()


def test_node_record_round_trips(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    node = NodeRecord("n1", (0, 1, 2, 3), 8 << 30, (0,), {"arch": "x86_64"}, "10.0.0.1", False, "",
                      Drain("bios", 5.0, 65.0), 1.0, numa=((0, 1), (2, 3)))
    store.put_node(node)
    store.commit()
    assert store.load().nodes == [node]
    store.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "s.db")
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="state database"):
        Store(str(path))


def test_database_is_in_wal_mode(tmp_path):
    Store(str(tmp_path / "s.db")).close()
    db = sqlite3.connect(str(tmp_path / "s.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_an_older_schema_is_migrated_in_place(tmp_path):
    path = str(tmp_path / "s.db")
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE nodes DROP COLUMN numa")
    db.execute("ALTER TABLE jobs DROP COLUMN array_of")
    db.execute("ALTER TABLE tasks DROP COLUMN cpu_seconds")
    db.execute("ALTER TABLE tasks DROP COLUMN peak_memory")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    store = Store(path)
    store.put_node(NodeRecord("n1", (0, 1), 1 << 30, numa=((0,), (1,))))
    store.commit()
    assert store.load().nodes[0].numa == ((0,), (1,))
    store.close()


def test_schema_4_loses_the_live_jobs_index_and_keeps_its_jobs(tmp_path, clock):
    path = str(tmp_path / "s.db")
    h = Harness(path, clock)
    [job] = h.state.submit(spec(), "alice")
    h.commit()
    h.store.close()
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX jobs_live ON jobs (state) WHERE state IN ('PENDING', 'STARTING', 'RUNNING')")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    h.open()
    assert job in h.state.jobs
    h.store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "5"
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name='jobs_live'").fetchone() is None
    db.close()


def test_a_tasks_cores_and_gpus_read_back_as_written(tmp_path, clock):
    h = Harness(str(tmp_path / "s.db"), clock)
    h.register("n1", cpus=4)
    [job] = h.state.submit(spec(cpus=3), "alice")
    h.schedule()
    assert not h.store.has_pending
    written = {key: task.grant for key, task in h.state.tasks.items()}
    h.restart()
    assert {key: task.grant for key, task in h.state.tasks.items()} == written
    assert written[(job, 0, 0)].cores == (0, 1, 2)
    h.store.close()
