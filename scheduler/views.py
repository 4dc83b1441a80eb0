"""What clients read: the queue, one job in full, the nodes, as plain data ready for msgpack and --json.

Read-only over `ClusterState` (and the store for finished jobs); the command formats these for a terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from jobs.units import format_cpu_list
from scheduler.fairshare import PriorityFactors
from scheduler.holds import array_limit
from scheduler.records import JobRecord, TaskRecord
from scheduler.state import ClusterState, NotFound

RECENT_SECONDS = 24 * 3600


def queue_rows(state: ClusterState, user: str | None, include_ended: bool) -> list[dict[str, Any]]:
    """Live jobs in queue order (running first, then pending by priority and submission); with
    `include_ended`, jobs that ended in the last day too."""
    jobs = list(state.jobs.values())
    if include_ended:
        jobs += state.store.jobs_since(state.clock.time() - RECENT_SECONDS)
    if user:
        jobs = [job for job in jobs if job.user == user]
    order = {"RUNNING": 0, "STARTING": 1, "PENDING": 2}
    jobs.sort(key=lambda j: (order.get(j.state.value, 3), -j.priority if j.state.value == "PENDING" else 0, j.id))
    now = state.clock.time()
    factors = state.policy.explain([job for job in jobs if job.state.value == "PENDING"], now)
    return [_row(state, job, now, factors) for job in jobs]


def _row(state: ClusterState, job: JobRecord, now: float,
         factors: Mapping[int, PriorityFactors] | None = None) -> dict[str, Any]:
    nodes = []
    if not job.is_ended:
        nodes = list(dict.fromkeys(state.tasks[k].grant.node for k in state.current.get(job.id, ())))
    elapsed = None
    if job.started_at is not None:
        elapsed = (job.ended_at or now) - job.started_at
    return {"id": job.id, "name": job.name, "user": job.user, "state": job.state.value, "nodes": nodes,
            "time": elapsed, "reason": job.reason, "priority": job.priority, "attempt": job.attempt,
            "exit_code": job.exit_code, "submitted_at": job.submitted_at, "array_index": job.array_index,
            "array_of": job.array_of, "array_limit": array_limit(job) if job.array_of is not None else None,
            "factors": _factors((factors or {}).get(job.id))}


def _factors(factors: PriorityFactors | None) -> dict[str, Any] | None:
    """A pending job's priority factors, weighed now (`rade queue --priority`)."""
    if factors is None:
        return None
    return {"job": factors.job, "age": factors.age, "fairshare": factors.fairshare, "priority": factors.priority}


def job_detail(state: ClusterState, job_id: int) -> dict[str, Any]:
    """Everything about one job: its record, every task of every attempt, and why it waits."""
    job = state.jobs.get(job_id)
    if job is not None:
        tasks = [state.tasks[k] for k in state.current.get(job_id, ())]
        stored = state.store.job(job_id)
        if stored is not None:
            live = {t.key for t in tasks}
            tasks = [t for t in stored[1] if t.key not in live] + tasks
    else:
        stored = state.store.job(job_id)
        if stored is None:
            raise NotFound(f"no job {job_id}", "see 'rade queue --all'")
        job, tasks = stored
    detail = _row(state, job, state.clock.time())
    detail.update(spec=dict(job.spec), started_at=job.started_at, ended_at=job.ended_at,
                  tasks=[_task(t) for t in sorted(tasks, key=lambda t: (t.attempt, t.task))])
    if not job.is_ended and job_id in state.policy.expected_start:
        detail["expected_start"] = state.policy.expected_start[job_id]
    nodes = detail["nodes"] or list(dict.fromkeys(t.grant.node for t in tasks if t.attempt == job.attempt))
    if nodes:
        detail["hops"] = state.policy.hops(nodes)
    rejection = state.why.get(job_id)
    if rejection is not None and not job.is_ended:
        detail["pending"] = {"reason": rejection.reason.value, "detail": rejection.detail,
                             "nodes": dict(rejection.nodes)}
    return detail


def _task(task: TaskRecord) -> dict[str, Any]:
    return {"task": task.task, "attempt": task.attempt, "node": task.grant.node, "state": task.state.value,
            "desired": task.desired.value, "exit_code": task.exit_code, "detail": task.detail,
            "cpus": task.grant.cpus_milli / 1000, "cpuset": format_cpu_list(task.grant.cores),
            "memory": task.grant.memory, "gpus": list(task.grant.gpus), "ranks": task.grant.ranks,
            "started_at": task.started_at, "ended_at": task.ended_at}


def node_rows(state: ClusterState) -> list[dict[str, Any]]:
    rows = []
    for name in state.order:
        node, view = state.nodes[name], state.views[name]
        reason = ""
        if node.down:
            reason = node.down_reason
        elif node.drain is not None:
            reason = node.drain.reason
        rows.append({
            "name": name, "state": state.node_state(name), "cpus_alloc": view.cpus_used_milli / 1000,
            "cpus_total": len(view.cores), "memory_alloc": view.memory_used, "memory_total": view.memory,
            "gpus_alloc": len(view.gpus_used), "gpus_total": len(view.gpus), "labels": dict(node.labels),
            "reason": reason, "tasks": len(state.on_node.get(name, ())), "address": node.address,
            "drain_deadline": node.drain.deadline if node.drain else None,
        })
    return rows


def stats(state: ClusterState) -> dict[str, Any]:
    """Counts for scripts and benchmarks: jobs by state, nodes by state, placements so far."""
    # Asked often while the scheduler is busiest (scripts and benchmarks poll it): counted at C speed.
    by_state = Counter(job.state for job in state.jobs.values())
    nodes = Counter(state.node_state(name) for name in state.order)
    return {"jobs": {s.value: n for s, n in by_state.items()}, "ended": len(state.ended), "nodes": dict(nodes),
            "placed": state.placed_total}
