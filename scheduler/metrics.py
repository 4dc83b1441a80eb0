"""The scheduler's Prometheus endpoint: jobs by state, nodes by state, placements, scheduling-cycle time.

The daemon's thread owns the cluster's state, so the HTTP server (prometheus-client's, in a thread of its
own) never reads it: the daemon pushes counts into this module's metrics after its passes (`update`,
`observe_cycle`), and a scrape reads only those, which prometheus-client guards with its own locks. Off
unless the configuration names a port (`metrics: 9410`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

JOB_STATES = ("PENDING", "STARTING", "RUNNING")
NODE_STATES = ("IDLE", "MIXED", "ALLOCATED", "DRAINING", "DRAINED", "DOWN", "UNKNOWN")
# Scheduling passes take from tens of microseconds (nothing new) to tens of milliseconds (a long queue).
CYCLE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class SchedulerMetrics:
    """The scheduler's metrics in a registry of their own (so several schedulers in one process, as in
    tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("rade_scheduler_jobs", "Live jobs by state (PENDING, STARTING, RUNNING)", ["state"],
                          registry=self.registry)
        self.ended = Gauge("rade_scheduler_jobs_ended", "Jobs ended since the database began", registry=self.registry)
        self.nodes = Gauge("rade_scheduler_nodes", "Nodes by state", ["state"], registry=self.registry)
        self.placements = Counter("rade_scheduler_placements", "Jobs placed on nodes (plans committed)",
                                  registry=self.registry)
        self.cycle = Histogram("rade_scheduler_cycle_seconds", "Wall time of one scheduling pass",
                               buckets=CYCLE_BUCKETS, registry=self.registry)
        self._placed = 0
        self._server = None

    def update(self, jobs: Mapping[str, int], nodes: Mapping[str, int], placed_total: int, ended: int) -> None:
        """The counts now (as `scheduler.views.stats` gives them); states with none are reported as 0."""
        for state in (*JOB_STATES, *(s for s in jobs if s not in JOB_STATES)):
            self.jobs.labels(state).set(jobs.get(state, 0))
        for state in (*NODE_STATES, *(s for s in nodes if s not in NODE_STATES)):
            self.nodes.labels(state).set(nodes.get(state, 0))
        if placed_total > self._placed:
            self.placements.inc(placed_total - self._placed)
        self._placed = placed_total
        self.ended.set(ended)

    def observe_cycle(self, seconds: float) -> None:
        self.cycle.observe(seconds)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Serve /metrics over HTTP on a thread of its own; returns the port (0 lets the system choose)."""
        self._server, _ = start_http_server(port, address, registry=self.registry)
        bound = self._server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", address, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
