"""The Prometheus endpoints of the scheduler and the agent: served over HTTP on loopback, parsed with
prometheus-client's own text parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.metrics import AgentMetrics, TaskUsage
from scheduler.metrics import SchedulerMetrics

from ..daemons import scrape


@pytest.fixture
def scheduler_metrics() -> Iterator[tuple[SchedulerMetrics, int]]:
    metrics = SchedulerMetrics()
    port = metrics.serve(0)
    try:
        yield metrics, port
    finally:
        metrics.close()


def test_scheduler_endpoint_gives_queue_nodes_placements_and_cycle_time(scheduler_metrics):
    metrics, port = scheduler_metrics
    metrics.update({"PENDING": 3, "RUNNING": 2}, {"IDLE": 1, "MIXED": 1}, placed_total=5, ended=7)
    metrics.update({"PENDING": 2, "RUNNING": 3}, {"MIXED": 2}, placed_total=6, ended=7)
    metrics.observe_cycle(0.002)
    got = scrape(port)
    assert got["rade_scheduler_jobs"][(("state", "PENDING"),)] == 2
    assert got["rade_scheduler_jobs"][(("state", "STARTING"),)] == 0
    assert got["rade_scheduler_nodes"][(("state", "MIXED"),)] == 2
    assert got["rade_scheduler_nodes"][(("state", "IDLE"),)] == 0
    assert got["rade_scheduler_placements_total"][()] == 6
    assert got["rade_scheduler_jobs_ended"][()] == 7
    assert got["rade_scheduler_cycle_seconds_count"][()] == 1
    assert got["rade_scheduler_cycle_seconds_bucket"][(("le", "0.005"),)] == 1


def test_agent_endpoint_gives_running_tasks_and_usage_by_task():
    metrics = AgentMetrics("n1")
    port = metrics.serve(0)
    try:
        metrics.update([TaskUsage(7, 0, 0, 1.5, 1 << 20), TaskUsage(8, 1, 2, 0.25, 4096)])
        metrics.update([TaskUsage(8, 1, 2, 0.5, 8192)])
        got = scrape(port)
    finally:
        metrics.close()
    assert got["rade_agent_tasks_running"][(("node", "n1"),)] == 1
    task = (("attempt", "2"), ("job", "8"), ("node", "n1"), ("task", "1"))
    assert got["rade_agent_task_cpu_seconds"] == {task: 0.5}
    assert got["rade_agent_task_memory_bytes"] == {task: 8192}
