"""Node liveness and drain as small state machines over a hand-moved clock."""

from __future__ import annotations

from scheduler.drain import begin_drain, drain_state, next_deadline, overdue
from scheduler.nodes import HeartbeatBook, Liveness
from scheduler.records import NodeRecord


def test_node_is_silent_after_the_configured_misses(clock):
    book = HeartbeatBook(clock, Liveness(interval=2.0, misses=3))
    book.heard("n1")
    clock.advance(5.9)
    assert book.silent() == [] and book.is_alive("n1")
    clock.advance(0.2)
    assert book.silent() == ["n1"]
    assert book.silent() == []  # reported once, until heard again


def test_known_nodes_get_a_grace_period_after_a_restart(clock):
    book = HeartbeatBook(clock, Liveness(interval=1.0, misses=3))
    book.expect("n1")
    clock.advance(2.5)
    book.heard("n1")
    clock.advance(2.5)
    assert book.silent() == []


def test_drain_is_draining_while_work_runs_then_drained():
    node = NodeRecord("n1", (0,), 1, drain=begin_drain("maintenance", 100.0, None))
    assert drain_state(node, running_tasks=2) == "DRAINING"
    assert drain_state(node, running_tasks=0) == "DRAINED"
    assert drain_state(NodeRecord("n2", (0,), 1), 0) is None


def test_drain_deadline_names_the_tasks_to_stop_only_once_passed():
    node = NodeRecord("n1", (0,), 1, drain=begin_drain("reboot", 100.0, 60))
    running = {"n1": [(7, 0, 0)]}
    assert overdue([node], running, 159.0) == []
    assert next_deadline([node], 159.0) == 1.0
    [decision] = overdue([node], running, 160.0)
    assert decision.node == "n1" and decision.tasks == ((7, 0, 0),)
