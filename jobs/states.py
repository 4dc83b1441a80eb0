"""The life of jobs, tasks and nodes: their states and the moves between them, one table per machine.

A job or task is PENDING (queued), STARTING (placed, containers being made), RUNNING, then ends COMPLETED,
FAILED, CANCELLED, TIMEOUT, OOM or NODE_FAIL. A job whose node failed goes back to PENDING when it may be
requeued; waiting or starting work may be cancelled. A node is IDLE, MIXED or ALLOCATED by load, DRAINING
(no new work, old work still running), DRAINED, or DOWN (missed heartbeats).

`advance(current, new)` is the only way code should move a state: it returns `new` or raises StateError
naming both states, so a stale or impossible update is noticed rather than applied.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from jobs.errors import StateError


class JobState(enum.Enum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OOM = "OOM"
    NODE_FAIL = "NODE_FAIL"


class TaskState(enum.Enum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OOM = "OOM"
    NODE_FAIL = "NODE_FAIL"


class NodeState(enum.Enum):
    IDLE = "IDLE"
    MIXED = "MIXED"
    ALLOCATED = "ALLOCATED"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"
    DOWN = "DOWN"


_ENDINGS = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL")
_RUN_MOVES: dict[str, tuple[str, ...]] = {
    "PENDING": ("STARTING", "CANCELLED"),
    # A start can fail before the program runs (image missing, node lost, killed while starting).
    "STARTING": ("RUNNING", *_ENDINGS),
    "RUNNING": _ENDINGS,
    "COMPLETED": (),
    "FAILED": (),
    "CANCELLED": (),
    "TIMEOUT": (),
    "OOM": (),
    # Only a requeue leaves NODE_FAIL: the same job waits again, with a new attempt for its tasks.
    "NODE_FAIL": ("PENDING",),
}

JOB_MOVES: Mapping[JobState, frozenset[JobState]] = {
    JobState(state): frozenset(JobState(n) for n in moves) for state, moves in _RUN_MOVES.items()}
TASK_MOVES: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState(state): frozenset(TaskState(n) for n in moves) for state, moves in _RUN_MOVES.items()}

_N = NodeState
_LOADS = (_N.IDLE, _N.MIXED, _N.ALLOCATED)
NODE_MOVES: Mapping[NodeState, frozenset[NodeState]] = {
    # Load changes freely among the working states; an admin drains; any node can stop answering.
    _N.IDLE: frozenset({_N.MIXED, _N.ALLOCATED, _N.DRAINING, _N.DRAINED, _N.DOWN}),
    _N.MIXED: frozenset({_N.IDLE, _N.ALLOCATED, _N.DRAINING, _N.DOWN}),
    _N.ALLOCATED: frozenset({_N.IDLE, _N.MIXED, _N.DRAINING, _N.DOWN}),
    # Draining ends when the last task does (DRAINED) or is undone by `rade resume`.
    _N.DRAINING: frozenset({_N.DRAINED, *_LOADS, _N.DOWN}),
    _N.DRAINED: frozenset({_N.IDLE, _N.DOWN}),
    # A node that answers again comes back idle (its old tasks were failed and requeued), or still drained.
    _N.DOWN: frozenset({_N.IDLE, _N.DRAINED}),
}

# Ended: NODE_FAIL too, though a requeue may start the job over as a new PENDING.
TERMINAL_JOB_STATES = frozenset(JobState(name) for name in _ENDINGS)
TERMINAL_TASK_STATES = frozenset(TaskState(name) for name in _ENDINGS)

_TABLES: dict[type, Mapping] = {JobState: JOB_MOVES, TaskState: TASK_MOVES, NodeState: NODE_MOVES}

S = TypeVar("S", JobState, TaskState, NodeState)


def can_advance(current: S, new: S) -> bool:
    """Whether `current` may become `new` (staying put is not a move)."""
    table = _TABLES[type(current)]
    return type(new) is type(current) and new in table[current]


def advance(current: S, new: S) -> S:
    """`new`, if the table allows the move from `current`; StateError naming both otherwise."""
    if not can_advance(current, new):
        kind = type(current).__name__.removesuffix("State").lower()
        allowed = ", ".join(sorted(s.value for s in _TABLES[type(current)][current])) or "nothing (it is final)"
        raise StateError(f"a {kind} cannot go from {current.value} to {getattr(new, 'value', new)}",
                         f"from {current.value} it may go to {allowed}")
    return new


def is_terminal(state: JobState | TaskState) -> bool:
    """Whether the job or task has ended (NODE_FAIL included: a requeue starts it over)."""
    return state in TERMINAL_JOB_STATES or state in TERMINAL_TASK_STATES
