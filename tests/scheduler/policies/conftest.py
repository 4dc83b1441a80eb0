"""Fixtures for the scheduling policies' tests: node views, queued jobs and running work built by hand."""

from __future__ import annotations

from scheduler.queue import QueuedJob
from scheduler.resources import GIB, JobDemand, NodeView, TaskDemand


def node(name: str, cores: int = 4) -> NodeView:
    return NodeView(name=name, cores=tuple(range(cores)), memory=64 * GIB)


def queued(job_id: int, cpus: int = 1, tasks: int = 1, priority: int = 0, nodes: int | None = None,
           policy: str = "pack", **kw) -> QueuedJob:
    demand = JobDemand(job_id=job_id, per_task=TaskDemand(cpus * 1000, GIB), tasks=tasks, nodes=nodes,
                       policy=policy)
    return QueuedJob(job_id, priority, job_id, demand, **kw)
