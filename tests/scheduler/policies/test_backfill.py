"""EASY backfill: the blocked head job gets a reservation at the earliest time running work's limits allow;
a later job starts now only when it does not delay that reservation."""

from __future__ import annotations

import math
import random

from scheduler.backfill import Running, backfill_pass, earliest_start
from scheduler.placement import PendingReason
from scheduler.resources import GIB, NodeView, TaskDemand

from .conftest import node, queued


def busy(view: NodeView, cpus: int) -> tuple[NodeView, Running]:
    """The node with `cpus` CPUs taken, and that work as running (its end set by the caller)."""
    after, grant = view.take(TaskDemand(cpus * 1000, GIB))
    return after, grant


def cluster_with_hole():
    """Two 4-core nodes: n1 busy until t=100, n2 with 2 cores busy until t=500."""
    n1, g1 = busy(node("n1"), 4)
    n2, g2 = busy(node("n2"), 2)
    return {"n1": n1, "n2": n2}, [Running(100.0, g1), Running(500.0, g2)]


def test_head_job_reserved_at_the_earliest_time_running_limits_allow():
    views, running = cluster_with_hole()
    result = backfill_pass([queued(1, cpus=4, tasks=2)], views, running, {1: 60.0}, now=0.0)
    assert result.plans == ()
    (reservation,) = result.reservations
    assert (reservation.job_id, reservation.start, set(reservation.nodes)) == (1, 500.0, {"n1", "n2"})
    assert result.expected_start == {1: 500.0}


def test_short_job_backfills_into_the_hole_and_long_one_does_not():
    views, running = cluster_with_hole()
    jobs = [queued(1, cpus=4, tasks=2), queued(2, cpus=1), queued(3, cpus=1)]
    # Job 2 ends by t=400, before the reservation at 500: it may use one of n2's free cores now.
    # Job 3 would run past 500 on a reserved node: it waits, reason Priority, though a core is free.
    result = backfill_pass(jobs, views, running, {1: 60.0, 2: 400.0, 3: 900.0}, now=0.0)
    assert [p.job_id for p in result.plans] == [2]
    assert result.backfilled == {2}
    assert result.waiting[3].reason is PendingReason.PRIORITY
    assert result.expected_start[1] == 500.0


def test_fifo_stops_at_the_first_blocked_job():
    views, running = cluster_with_hole()
    jobs = [queued(1, cpus=4, tasks=2), queued(2, cpus=2)]
    result = backfill_pass(jobs, views, running, {1: 60.0, 2: 10.0}, now=0.0, mode="fifo")
    assert result.plans == ()
    assert result.reservations == ()


def test_job_without_limit_never_backfills_onto_reserved_nodes():
    views, running = cluster_with_hole()
    result = backfill_pass([queued(1, cpus=4, tasks=2), queued(2, cpus=1)], views, running, {1: 60.0}, now=0.0)
    assert result.plans == ()
    assert result.waiting[2].reason is PendingReason.PRIORITY


def test_behind_work_without_limit_the_head_job_holds_nodes_with_no_known_start():
    n1, g1 = busy(node("n1"), 3)
    jobs = [queued(1, cpus=4), queued(2, cpus=1)]
    result = backfill_pass(jobs, {"n1": n1}, [Running(math.inf, g1)], {1: 10.0, 2: 5.0}, now=0.0)
    (held,) = result.reservations
    assert (held.job_id, held.nodes, held.known) == (1, ("n1",), False)
    assert result.expected_start == {}
    # Nothing can end before a start that is not known: the small job may not take n1's last core.
    assert result.plans == () and result.waiting[2].reason is PendingReason.PRIORITY


def test_depth_two_reserves_for_the_first_two_blocked_jobs_apart():
    views, running = cluster_with_hole()
    jobs = [queued(1, cpus=4), queued(2, cpus=4), queued(3, cpus=1)]
    result = backfill_pass(jobs, views, running, {1: 1000.0, 2: 1000.0, 3: 50.0}, now=0.0, depth=2)
    first, second = result.reservations
    assert (first.job_id, first.start, first.nodes) == (1, 100.0, ("n1",))
    assert (second.job_id, second.start, second.nodes) == (2, 500.0, ("n2",))
    # Job 3 ends at 50, before either reservation starts: it runs now on n2's free cores.
    assert [p.job_id for p in result.plans] == [3]


def test_backfill_never_delays_the_reserved_job_on_random_workloads():
    """Simulate: whatever backfill starts, the head job starts no later than its first reservation said."""
    rng = random.Random(7)
    for _ in range(40):
        views = {f"n{i}": node(f"n{i}") for i in range(1, 5)}
        running = []
        now = 0.0
        for name in list(views):
            take = rng.randint(0, 4)
            if take:
                views[name], grant = busy(views[name], take)
                running.append(Running(float(rng.randint(1, 50)), grant))
        head = queued(1, cpus=4, tasks=3)
        others = [queued(i, cpus=rng.randint(1, 4)) for i in range(2, 12)]
        limits = {j.job_id: float(rng.randint(1, 80)) for j in [head, *others]}
        first = backfill_pass([head, *others], views, running, limits, now)
        if any(p.job_id == 1 for p in first.plans):
            continue
        assert first.reservations and first.reservations[0].job_id == 1
        promised = first.expected_start[1]
        # Play time forward: work ends at its limit; the head must be placed by the promised time.
        for plan in first.plans:
            for grant in plan.grants:
                views[grant.node] = views[grant.node].with_grant(grant)
                running.append(Running(now + limits[plan.job_id], grant))
        started = None
        for moment in sorted({r.end for r in running} | {promised}):
            for item in [r for r in running if r.end <= moment]:
                views[item.grant.node] = views[item.grant.node].give_back(item.grant)
                running.remove(item)
            again = backfill_pass([head], views, running, limits, moment)
            if again.plans:
                started = moment
                break
        assert started is not None and started <= promised


def test_earliest_start_is_now_when_the_job_fits():
    found = earliest_start(queued(1, cpus=2).demand, 10.0, {"n1": node("n1")}, [], [], now=5.0)
    assert found is not None and (found.start, found.end, found.nodes) == (5.0, 15.0, ("n1",))


def test_a_pass_that_reaches_its_limit_stops_and_leaves_the_views_it_was_given_untouched():
    views = {"n1": node("n1"), "n2": node("n2")}
    before = dict(views)
    opened = ["n1", "n2"]
    result = backfill_pass([queued(i) for i in range(1, 7)], views, [], {}, now=0.0, limit=3, open_names=opened)
    assert [p.job_id for p in result.plans] == [1, 2, 3]
    assert not result.waiting  # the jobs after the limit keep the reasons they had
    assert views == before and opened == ["n1", "n2"]


def test_a_pass_over_jobs_that_all_fit_places_them_on_the_first_open_nodes():
    views = {f"n{i:03d}": node(f"n{i:03d}") for i in range(200)}
    result = backfill_pass([queued(1), queued(2, cpus=4)], views, [], {}, now=0.0,
                           open_names=sorted(views))
    assert [(p.job_id, p.nodes) for p in result.plans] == [(1, ("n000",)), (2, ("n001",))]
