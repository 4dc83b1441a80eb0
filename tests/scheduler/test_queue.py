"""Queue order and the scheduling pass: priority then submission, reasons for those left, no starvation."""

from __future__ import annotations

from scheduler.placement import PendingReason
from scheduler.queue import QueuedJob, queue_order, schedule_pass
from scheduler.resources import GIB, JobDemand, NodeView, TaskDemand


def node(name: str, cores: int = 4) -> NodeView:
    return NodeView(name=name, cores=tuple(range(cores)), memory=64 * GIB)


def job(job_id: int, cpus: int = 1, tasks: int = 1, priority: int = 0, seq: int | None = None, **kw) -> QueuedJob:
    demand = JobDemand(job_id=job_id, per_task=TaskDemand(cpus * 1000, GIB), tasks=tasks)
    return QueuedJob(job_id, priority, job_id if seq is None else seq, demand, **kw)


def test_queue_orders_by_priority_then_submission():
    jobs = [job(1), job(2, priority=5), job(3), job(4, priority=5)]
    assert [j.job_id for j in queue_order(jobs)] == [2, 4, 1, 3]


def test_pass_places_in_order_and_later_jobs_see_earlier_ones():
    result = schedule_pass([job(1, cpus=3), job(2, cpus=3), job(3, cpus=1)], [node("n1"), node("n2")])
    assert [p.job_id for p in result.plans] == [1, 2, 3]
    cores = [set(g.cores) for p in result.plans for g in p.grants if g.node == "n1"]
    assert cores[0].isdisjoint(cores[1])


def test_big_head_job_gets_a_reservation_and_small_jobs_wait_with_reason_priority():
    busy = node("n1").with_grant(node("n1").take(TaskDemand(1000, GIB))[1])
    nodes = [busy, node("n2")]
    result = schedule_pass([job(1, cpus=4, tasks=2), job(2, cpus=1)], nodes)
    assert result.plans == ()
    assert result.waiting[1].reason is PendingReason.RESOURCES
    assert result.waiting[2].reason is PendingReason.PRIORITY
    assert set(result.reservation) == {"n1", "n2"}


def test_small_job_runs_on_nodes_the_reservation_does_not_need():
    busy = node("n1").with_grant(node("n1").take(TaskDemand(1000, GIB))[1])
    result = schedule_pass([job(1, cpus=4), job(2, cpus=1)], [busy, node("n2", cores=2)])
    # Job 1 needs a 4-core node; only n1 has 4 cores, so n2 stays open for job 2.
    assert result.reservation == {"n1": 1}
    assert [p.job_id for p in result.plans] == [2]


def test_held_jobs_keep_their_reason():
    result = schedule_pass([job(1, held=PendingReason.DEPENDENCY, held_detail="afterok:7")], [node("n1")])
    assert result.waiting[1].reason is PendingReason.DEPENDENCY and result.plans == ()


def test_limit_stops_a_pass_after_that_many_plans():
    result = schedule_pass([job(i) for i in range(1, 6)], [node("n1")], limit=2)
    assert len(result.plans) == 2 and len(result.waiting) == 3
