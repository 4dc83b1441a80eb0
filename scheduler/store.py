"""The scheduler's durable state: one SQLite database in WAL mode, with a versioned schema.

Every change the scheduler makes goes through here inside a transaction that the daemon commits before it
answers a client or sends an order to an agent, so a scheduler killed at any instant restarts with every
job it ever acknowledged and every placement it ever announced. The daemon groups all the changes of one
turn of its loop into one transaction (group commit). In WAL mode with `synchronous=NORMAL` (the default)
a commit is in the WAL file before the answer goes out, so it survives any death of the process; `FULL`
adds an fsync per commit (about 5 ms on this kind of VM disk) for sites that want it to survive a power cut.

Writes are buffered and written at `commit`, with one statement per table. Only this module knows the SQL. It stores records (see `records`) and gives them back; it decides nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass

from jobs.errors import RadeError
from jobs.states import JobState, TaskState
from scheduler.records import Desired, Drain, JobRecord, NodeRecord, Outcome, TaskRecord
from scheduler.resources import Grant, demand_from_spec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5

# How each older schema becomes the next one; run in order, in one transaction, when an older file opens.
_MIGRATIONS = {
    1: ["ALTER TABLE nodes ADD COLUMN numa TEXT NOT NULL DEFAULT '[]'"],
    2: ["ALTER TABLE jobs ADD COLUMN array_of INTEGER"],
    3: ["ALTER TABLE tasks ADD COLUMN cpu_seconds REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN peak_memory INTEGER NOT NULL DEFAULT 0"],
    # The partial index on live jobs' state cost more on every state change (half of each update) than it
    # saved: only the restart reads by state, and it reads every finished job's state anyway.
    4: ["DROP INDEX IF EXISTS jobs_live"],
}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, user TEXT NOT NULL, spec TEXT NOT NULL, priority INTEGER NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', attempt INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER, outcome TEXT, outcome_code INTEGER,
    submitted_at REAL NOT NULL, started_at REAL, ended_at REAL, array_index INTEGER, array_of INTEGER
);
CREATE TABLE tasks (
    job_id INTEGER NOT NULL REFERENCES jobs (id), task INTEGER NOT NULL, attempt INTEGER NOT NULL,
    node TEXT NOT NULL, cores TEXT NOT NULL, cpus_milli INTEGER NOT NULL, memory INTEGER NOT NULL,
    gpus TEXT NOT NULL, ranks INTEGER NOT NULL,
    desired TEXT NOT NULL, state TEXT NOT NULL, exit_code INTEGER, seq INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '', started_at REAL, ended_at REAL,
    cpu_seconds REAL NOT NULL DEFAULT 0, peak_memory INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, task, attempt)
);
CREATE TABLE nodes (
    name TEXT PRIMARY KEY, cores TEXT NOT NULL, memory INTEGER NOT NULL, gpus TEXT NOT NULL,
    labels TEXT NOT NULL, address TEXT NOT NULL DEFAULT '', down INTEGER NOT NULL DEFAULT 0,
    down_reason TEXT NOT NULL DEFAULT '', drain_reason TEXT, drain_started REAL, drain_deadline REAL,
    registered_at REAL NOT NULL, boot TEXT NOT NULL DEFAULT '', last_seq INTEGER NOT NULL DEFAULT 0,
    numa TEXT NOT NULL DEFAULT '[]'
);
"""


# One encoder for every spec stored: json.dumps with options builds a new encoder on each call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _ints(values: tuple[int, ...]) -> str:
    """A JSON list of ints (a task's cores, its GPUs), written without the json module's per-call setup."""
    return f"[{','.join(map(str, values))}]"


class StoreError(RadeError):
    """The state database cannot be opened or is not one this scheduler understands."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything the scheduler needs back after a restart."""

    jobs: list[JobRecord]
    tasks: list[TaskRecord]
    nodes: list[NodeRecord]


class Store:
    """The SQLite database behind the scheduler. Not thread-safe: the daemon's one thread owns it."""

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'NORMAL' if synchronous.upper() == 'NORMAL' else 'FULL'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._prepare()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"state database {path}: {err}",
                             "move it aside to start with an empty cluster, or restore a backup") from None
        self._inserts: list[JobRecord] = []
        self._jobs: dict[int, JobRecord] = {}
        self._tasks: dict[tuple[int, int, int], TaskRecord] = {}
        self._nodes: dict[str, NodeRecord] = {}

    def _prepare(self) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
            log.info("created state database %s (schema %d)", self.path, SCHEMA_VERSION)
            return
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version in _MIGRATIONS and version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    self._db.execute(statement)
                version += 1
            self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
            self._db.execute("COMMIT")
            log.info("state database %s migrated to schema %d", self.path, version)
        if version != SCHEMA_VERSION:
            raise StoreError(f"state database {self.path} has schema version {version}; "
                             f"this scheduler knows version {SCHEMA_VERSION}",
                             "run the rade version that wrote it, or move the file aside")
        check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"state database {self.path} is damaged: {check}", "restore it from a backup")

    # -- transactions ---------------------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """Whether changes wait for `commit` (nothing may be acted on while they do)."""
        return bool(self._inserts or self._jobs or self._tasks or self._nodes)

    def commit(self) -> None:
        """Write what was buffered and make it durable, in one transaction. Cheap when nothing changed."""
        if not self.has_pending:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._write()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _write(self) -> None:
        # Rows are buffered until the commit, so a row changed several times in one turn of the daemon's
        # loop is written once, and each table with a single executemany.
        db = self._db
        if self._inserts:
            db.executemany(
                "INSERT INTO jobs (id, name, user, spec, priority, state, reason, attempt, submitted_at,"
                " array_index, array_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(j.id, j.name, j.user, _compact_json(j.spec), j.priority, j.state.value,
                  j.reason, j.attempt, j.submitted_at, j.array_index, j.array_of) for j in self._inserts])
            self._inserts.clear()
        if self._jobs:
            db.executemany(
                "UPDATE jobs SET state=?, reason=?, attempt=?, exit_code=?, outcome=?, outcome_code=?,"
                " started_at=?, ended_at=? WHERE id=?",
                [(j.state.value, j.reason, j.attempt, j.exit_code, j.outcome.value if j.outcome else None,
                  j.outcome_code, j.started_at, j.ended_at, j.id) for j in self._jobs.values()])
            self._jobs.clear()
        if self._tasks:
            db.executemany(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(t.job_id, t.task, t.attempt, t.grant.node, _ints(t.grant.cores), t.grant.cpus_milli,
                  t.grant.memory, _ints(t.grant.gpus), t.grant.ranks, t.desired.value, t.state.value,
                  t.exit_code, t.seq, t.detail, t.started_at, t.ended_at, t.cpu_seconds, t.peak_memory)
                 for t in self._tasks.values()])
            self._tasks.clear()
        if self._nodes:
            rows = []
            for n in self._nodes.values():
                d = n.drain
                rows.append((n.name, json.dumps(n.cores), n.memory, json.dumps(n.gpus), json.dumps(dict(n.labels)),
                             n.address, int(n.down), n.down_reason, d.reason if d else None,
                             d.started_at if d else None, d.deadline if d else None, n.registered_at, n.boot,
                             n.last_seq, json.dumps(n.numa)))
            db.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._nodes.clear()

    def checkpoint_at(self, pages: int) -> None:
        """How many pages the WAL may reach before a commit of this connection copies them into the database
        file itself (SQLite's default is 1,000); for when another connection checkpoints sooner."""
        self._db.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def close(self, commit: bool = True) -> None:
        """Close the database; without `commit`, what was not yet committed is lost (as in a crash)."""
        if commit:
            self.commit()
        self._db.close()

    # -- writes (buffered until `commit`) ---------------------------------------------------------------------

    def next_job_id(self) -> int:
        """The id the next inserted job will get (ids are never reused, even after deletes)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='jobs'").fetchone()
        return (row[0] if row else 0) + 1

    def insert_job(self, job: JobRecord) -> None:
        self._inserts.append(job)

    def update_job(self, job: JobRecord) -> None:
        self._jobs[job.id] = job

    def put_task(self, task: TaskRecord) -> None:
        self._tasks[task.key] = task

    def put_node(self, node: NodeRecord) -> None:
        self._nodes[node.name] = node

    # -- reads ----------------------------------------------------------------------------------------------

    def load(self, finished_jobs: bool = True) -> Loaded:
        """Every job (or only live ones), the tasks of live jobs, and every node."""
        where = "" if finished_jobs else " WHERE state IN ('PENDING', 'STARTING', 'RUNNING')"
        jobs = [self._job(row) for row in self._db.execute(f"SELECT * FROM jobs{where} ORDER BY id")]
        live = {j.id for j in jobs if not j.is_ended}
        tasks = [self._task(row) for row in self._db.execute(
            "SELECT t.* FROM tasks t JOIN jobs j ON j.id = t.job_id"
            " WHERE j.state IN ('PENDING', 'STARTING', 'RUNNING') ORDER BY t.job_id, t.task, t.attempt")
            if row[0] in live]
        nodes = [self._node(row) for row in self._db.execute("SELECT * FROM nodes ORDER BY name")]
        return Loaded(jobs, tasks, nodes)

    def job(self, job_id: int) -> tuple[JobRecord, list[TaskRecord]] | None:
        """One job (finished ones included) and all its tasks of every attempt."""
        self.commit()  # what is buffered is part of the answer
        row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        tasks = [self._task(t) for t in self._db.execute(
            "SELECT * FROM tasks WHERE job_id=? ORDER BY attempt, task", (job_id,))]
        return self._job(row), tasks

    def ended_states(self) -> dict[int, tuple[JobState, int | None]]:
        """The final state and exit code of every finished job (what dependencies are judged by)."""
        return {row[0]: (JobState(row[1]), row[2]) for row in self._db.execute(
            "SELECT id, state, exit_code FROM jobs WHERE state NOT IN ('PENDING', 'STARTING', 'RUNNING')")}

    def jobs_since(self, ended_after: float) -> list[JobRecord]:
        """Finished jobs that ended after a wall time (for `rade queue --all`)."""
        self.commit()
        return [self._job(row) for row in self._db.execute(
            "SELECT * FROM jobs WHERE ended_at >= ? ORDER BY id", (ended_after,))]

    def accounting(self, since: float, user: str | None = None) -> list[tuple[JobRecord, list[TaskRecord]]]:
        """Jobs submitted after a wall time, or still live or ending after it, with all their tasks (for
        `rade acct`)."""
        self.commit()

        def where(j: str) -> str:
            text = (f"({j}submitted_at >= ? OR {j}ended_at >= ?"
                    f" OR {j}state IN ('PENDING', 'STARTING', 'RUNNING'))")
            return text + (f" AND {j}user = ?" if user is not None else "")

        args = [since, since] + ([user] if user is not None else [])
        jobs = [self._job(row) for row in self._db.execute(f"SELECT * FROM jobs WHERE {where('')} ORDER BY id", args)]
        tasks: dict[int, list[TaskRecord]] = {job.id: [] for job in jobs}
        rows = self._db.execute(f"SELECT t.* FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE {where('j.')}"
                                " ORDER BY t.job_id, t.attempt, t.task", args) if jobs else ()
        for row in rows:
            if row[0] in tasks:
                tasks[row[0]].append(self._task(row))
        return [(job, tasks[job.id]) for job in jobs]

    @staticmethod
    def _job(row: tuple) -> JobRecord:
        spec = json.loads(row[3])
        return JobRecord(id=row[0], name=row[1], user=row[2], spec=spec, demand=demand_from_spec(row[0], spec),
                         priority=row[4], state=JobState(row[5]), reason=row[6], attempt=row[7], exit_code=row[8],
                         outcome=Outcome(row[9]) if row[9] else None, outcome_code=row[10], submitted_at=row[11], started_at=row[12],
                         ended_at=row[13], array_index=row[14], array_of=row[15])

    @staticmethod
    def _task(row: tuple) -> TaskRecord:
        grant = Grant(row[3], tuple(json.loads(row[4])), row[5], row[6], tuple(json.loads(row[7])), row[8])
        return TaskRecord(job_id=row[0], task=row[1], attempt=row[2], grant=grant, desired=Desired(row[9]),
                          state=TaskState(row[10]), exit_code=row[11], seq=row[12], detail=row[13], started_at=row[14],
                          ended_at=row[15], cpu_seconds=row[16], peak_memory=row[17])

    @staticmethod
    def _node(row: tuple) -> NodeRecord:
        drain = Drain(row[8], row[9], row[10]) if row[8] is not None else None
        return NodeRecord(name=row[0], cores=tuple(json.loads(row[1])), memory=row[2],
                          gpus=tuple(json.loads(row[3])), labels=json.loads(row[4]), address=row[5],
                          down=bool(row[6]), down_reason=row[7], drain=drain, registered_at=row[11], boot=row[12],
                          last_seq=row[13], numa=tuple(tuple(group) for group in json.loads(row[14])))
