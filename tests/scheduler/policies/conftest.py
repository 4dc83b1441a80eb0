"""Fixtures for the scheduling policies' tests: node views, queued jobs and running work built by hand."""

from __future__ import annotations

import pytest

from scheduler.queue import QueuedJob
from scheduler.resources import GIB, JobDemand, NodeView, TaskDemand


def node(name: str, cores: int = 4) -> NodeView:
    return NodeView(name=name, cores=tuple(range(cores)), memory=64 * GIB)


def queued(job_id: int, cpus: int = 1, tasks: int = 1, priority: int = 0, nodes: int | None = None,
           policy: str = "pack", **kw) -> QueuedJob:
    demand = JobDemand(job_id=job_id, per_task=TaskDemand(cpus * 1000, GIB), tasks=tasks, nodes=nodes,
                       policy=policy)
    return QueuedJob(job_id, priority, job_id, demand, **kw)



@pytest.fixture
def clock():
    from ..conftest import FakeClock

    return FakeClock()


@pytest.fixture
def make_harness(tmp_path, clock):
    """Make a state (see tests/scheduler/conftest.py's Harness) that runs a given scheduling policy."""
    from scheduler.agents import AgentDesk
    from scheduler.nodes import Liveness
    from scheduler.policy import PolicyConfig, SchedulingPolicy
    from scheduler.state import ClusterState
    from scheduler.store import Store

    from ..conftest import Harness

    class PolicyHarness(Harness):
        def __init__(self, path: str, config: PolicyConfig) -> None:
            self.config = config
            super().__init__(path, clock)

        def open(self) -> None:
            self.store = Store(self.path)
            self.state = ClusterState(self.store, self.clock, Liveness(interval=1.0, misses=3),
                                      policy=SchedulingPolicy(self.config))
            self.desk = AgentDesk(self.state)

    made = []

    def make(config: PolicyConfig | None = None) -> PolicyHarness:
        made.append(PolicyHarness(str(tmp_path / f"state{len(made)}.db"), config or PolicyConfig()))
        return made[-1]

    try:
        yield make
    finally:
        for h in made:
            h.store.close()
