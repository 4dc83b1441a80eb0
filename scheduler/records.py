"""The scheduler's records of jobs, tasks and nodes: immutable values, replaced whole when they change.

A job's `state` is what users see; `outcome` is what it becomes once its tasks have all stopped (a failed
task, a cancel, a lost node or a drain deadline decide it before the last task is gone). A task's `desired`
is written by the scheduler (RUN or STOP) and its `state`, `exit_code` and `seq` by the agent that runs it,
so neither overwrites the other. A node's `drain` is a value of its own (see `drain`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.states import JobState, TaskState, is_terminal
from scheduler.resources import Grant, JobDemand


class Desired(str, enum.Enum):
    """What the scheduler wants of a task."""

    RUN = "RUN"
    STOP = "STOP"


class Outcome(str, enum.Enum):
    """What a job becomes when its last task has stopped, once something decided it early."""

    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OOM = "OOM"
    NODE_FAIL = "NODE_FAIL"
    REQUEUE = "REQUEUE"


LIVE_JOB_STATES = (JobState.PENDING, JobState.STARTING, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job: its spec (plain data), who submitted it, where it stands."""

    id: int
    name: str
    user: str
    spec: Mapping[str, Any]
    demand: JobDemand
    priority: int = 0
    state: JobState = JobState.PENDING
    reason: str = ""
    attempt: int = 0
    exit_code: int | None = None
    outcome: Outcome | None = None
    outcome_code: int | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    array_index: int | None = None
    array_of: int | None = None  # the first job of its array, which names the array

    @property
    def is_ended(self) -> bool:
        return self.state not in LIVE_JOB_STATES

    @property
    def depends_on(self) -> list[Mapping[str, Any]]:
        """Each entry maps one kind (afterok, afterany, afternotok, after) to the job ids it waits for."""
        return list(self.spec.get("depends_on") or ())

    @property
    def requeue(self) -> bool:
        return bool(self.spec.get("requeue"))


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task of one attempt of a job: where it runs (its grant) and what it is."""

    job_id: int
    task: int
    attempt: int
    grant: Grant
    desired: Desired = Desired.RUN
    state: TaskState = TaskState.STARTING
    exit_code: int | None = None
    seq: int = 0
    detail: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    cpu_seconds: float = 0.0  # as its agent measured them (accounting, fair share)
    peak_memory: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.job_id, self.task, self.attempt)

    @property
    def is_ended(self) -> bool:
        return is_terminal(self.state)


@dataclass(frozen=True, slots=True)
class Drain:
    """An admin's drain of a node: why, since when, and (optionally) when its work is stopped (wall time)."""

    reason: str
    started_at: float
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as registered: its capacity and labels, whether it is down, and its drain if any."""

    name: str
    cores: tuple[int, ...]
    memory: int
    gpus: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str = ""
    down: bool = False
    down_reason: str = ""
    drain: Drain | None = None
    registered_at: float = 0.0
    boot: str = ""
    last_seq: int = 0
    numa: tuple[tuple[int, ...], ...] = ()
