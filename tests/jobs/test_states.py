"""The state machines: every legal move is allowed, every other move raises StateError naming both states."""

from __future__ import annotations

import itertools

import pytest

from jobs.errors import StateError
from jobs.states import (
    JOB_MOVES,
    NODE_MOVES,
    TASK_MOVES,
    JobState,
    NodeState,
    TaskState,
    advance,
    can_advance,
    is_terminal,
)

TABLES = [(JobState, JOB_MOVES), (TaskState, TASK_MOVES), (NodeState, NODE_MOVES)]
ALL_PAIRS = [(table, a, b) for cls, table in TABLES for a, b in itertools.product(cls, cls)]


@pytest.mark.parametrize(("table", "current", "new"), ALL_PAIRS,
                         ids=[f"{a.__class__.__name__}.{a.name}->{b.name}" for _, a, b in ALL_PAIRS])
def test_every_move_is_allowed_exactly_when_the_table_says(table, current, new):
    if new in table[current]:
        assert advance(current, new) is new
        assert can_advance(current, new)
    else:
        assert not can_advance(current, new)
        with pytest.raises(StateError) as info:
            advance(current, new)
        assert current.value in str(info.value) and new.value in str(info.value)


def test_every_state_has_a_row():
    for cls, table in TABLES:
        assert set(table) == set(cls)


def test_the_job_life_of_interface_md():
    path = [JobState.PENDING, JobState.STARTING, JobState.RUNNING, JobState.NODE_FAIL, JobState.PENDING,
            JobState.STARTING, JobState.RUNNING, JobState.COMPLETED]
    for current, new in itertools.pairwise(path):
        advance(current, new)
    for ending in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL"):
        assert advance(JobState.RUNNING, JobState(ending)) is JobState(ending)
    assert advance(JobState.PENDING, JobState.CANCELLED) is JobState.CANCELLED
    assert advance(JobState.STARTING, JobState.CANCELLED) is JobState.CANCELLED


def test_ended_jobs_never_move_again_except_a_node_fail_requeue():
    for state in JobState:
        if state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.OOM):
            assert is_terminal(state) and not JOB_MOVES[state]
    assert is_terminal(JobState.NODE_FAIL) and JOB_MOVES[JobState.NODE_FAIL] == {JobState.PENDING}
    assert not is_terminal(JobState.RUNNING) and not is_terminal(TaskState.PENDING)


def test_node_drain_and_resume():
    advance(NodeState.ALLOCATED, NodeState.DRAINING)
    advance(NodeState.DRAINING, NodeState.DRAINED)
    advance(NodeState.DRAINED, NodeState.IDLE)
    advance(NodeState.MIXED, NodeState.DOWN)
    with pytest.raises(StateError, match="a node cannot go from DRAINED to ALLOCATED"):
        advance(NodeState.DRAINED, NodeState.ALLOCATED)


def test_states_of_different_machines_do_not_mix():
    with pytest.raises(StateError):
        advance(JobState.PENDING, TaskState.STARTING)  # type: ignore[type-var]
