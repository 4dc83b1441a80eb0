"""The node agent's Prometheus endpoint: running tasks, and CPU time and memory of each task.

The agent's loop pushes what its task slices report (`update`) and prometheus-client's HTTP server (a
thread started after the launcher forked, like ZeroMQ's) serves the last values. Per-task series carry
the job, task and attempt as labels, and are removed when the task ends, so a long-lived agent does not
keep a series per task it ever ran. Off unless the agent's configuration names a port.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, start_http_server

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskUsage:
    """One running task's usage as its cgroup reports it."""

    job_id: int
    task_id: int
    attempt: int
    cpu_seconds: float
    memory: int


class AgentMetrics:
    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self.running = Gauge("rade_agent_tasks_running", "Tasks running on this node", ["node"],
                             registry=self.registry)
        labels = ["node", "job", "task", "attempt"]
        self.cpu = Gauge("rade_agent_task_cpu_seconds", "CPU time a running task has used", labels,
                         registry=self.registry)
        self.memory = Gauge("rade_agent_task_memory_bytes", "Memory a running task uses now", labels,
                            registry=self.registry)
        self._seen: set[tuple[str, str, str]] = set()
        self._server = None

    def update(self, tasks: Iterable[TaskUsage]) -> None:
        """The running tasks now; series of tasks no longer listed are dropped."""
        now = set()
        for usage in tasks:
            key = (str(usage.job_id), str(usage.task_id), str(usage.attempt))
            now.add(key)
            self.cpu.labels(self.node, *key).set(usage.cpu_seconds)
            self.memory.labels(self.node, *key).set(usage.memory)
        for key in self._seen - now:
            self.cpu.remove(self.node, *key)
            self.memory.remove(self.node, *key)
        self._seen = now
        self.running.labels(self.node).set(len(now))

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        self._server, _ = start_http_server(port, address, registry=self.registry)
        bound = self._server.server_address[1]
        log.info("node %s: metrics on http://%s:%d/metrics", self.node, address, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def task_usage(tasks: Iterable[tuple[tuple[int, int, int], object]]) -> list[TaskUsage]:
    """What each running task's cgroup says now (`tasks` gives each task's key and its cgroup driver); a
    task whose cgroup cannot be read (it is going away) is left out."""
    from jobs.errors import RadeError

    usage = []
    for key, driver in tasks:
        try:
            stats = driver.stats()  # type: ignore[attr-defined]
        except (RadeError, OSError):
            continue
        usage.append(TaskUsage(*key, stats.cpu_seconds, stats.memory_current))
    return usage
