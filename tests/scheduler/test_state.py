"""The scheduler's state as its one writer: jobs run and end, nodes fail and come back fenced, tasks are
reconciled after a restart, stale updates are dropped. Driven by messages and a hand-moved clock."""

from __future__ import annotations

from jobs.messages import Launch
from jobs.states import JobState, TaskState

from .conftest import spec


def test_job_runs_to_completed_when_every_task_completes(harness):
    harness.register("n1")
    [job] = harness.state.submit(spec(tasks=2), "alice")
    harness.schedule()
    launches = harness.launches()
    assert [key for _, key in launches] == [(job, 0, 0), (job, 1, 0)]
    harness.run_all(launches)
    assert harness.state.jobs[job].state is JobState.RUNNING
    for node, key in launches:
        harness.update(node, key, TaskState.COMPLETED, 0)
    assert harness.state.ended[job] == (JobState.COMPLETED, 0)
    assert harness.state.views["n1"].tasks == 0


def test_a_failed_task_stops_the_others_and_fails_the_job_with_its_code(harness):
    harness.register("n1")
    [job] = harness.state.submit(spec(tasks=2), "alice")
    harness.schedule()
    launches = harness.launches()
    harness.run_all(launches)
    harness.update("n1", (job, 0, 0), TaskState.FAILED, 3)
    assert harness.kills() == [("n1", (job, 1, 0))]
    harness.update("n1", (job, 1, 0), TaskState.CANCELLED)
    assert harness.state.ended[job] == (JobState.FAILED, 3)


def test_stale_update_is_dropped(harness):
    harness.register("n1")
    [job] = harness.state.submit(spec(), "alice")
    harness.schedule()
    harness.update("n1", (job, 0, 0), TaskState.RUNNING, seq=10)
    harness.update("n1", (job, 0, 0), TaskState.COMPLETED, 0, seq=5)
    assert harness.state.jobs[job].state is JobState.RUNNING


def test_silent_node_goes_down_its_job_is_requeued_elsewhere_and_the_old_copy_fenced(harness, clock):
    harness.register("n1")
    [job] = harness.state.submit(spec(), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    harness.register("n2")
    for _ in range(4):
        clock.advance(1.0)
        harness.beat("n2")
        harness.state.tick()
    assert harness.state.node_state("n1") == "DOWN"
    record = harness.state.jobs[job]
    assert record.state is JobState.PENDING and record.attempt == 1
    harness.schedule()
    assert harness.launches() == [("n2", (job, 0, 1))]
    # n1 comes back still running attempt 0: it is told to kill it.
    harness.register("n1", running=((job, 0, 0),))
    assert ("n1", (job, 0, 0)) in harness.kills()
    assert harness.state.node_state("n1") == "IDLE"


def test_job_without_requeue_ends_node_fail(harness, clock):
    harness.register("n1")
    [job] = harness.state.submit(spec(requeue=False), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    clock.advance(10)
    harness.state.tick()
    assert harness.state.ended[job][0] is JobState.NODE_FAIL


def test_drained_node_gets_no_new_tasks_and_becomes_drained_when_empty(harness):
    harness.register("n1")
    [first] = harness.state.submit(spec(), "alice")
    harness.schedule()
    launches = harness.launches()
    harness.run_all(launches)
    assert harness.state.drain("n1", "maintenance", None) == "draining"
    [second] = harness.state.submit(spec(), "alice")
    harness.schedule()
    assert harness.launches() == []
    assert harness.state.jobs[second].reason == "NodesDrained"
    assert harness.state.node_state("n1") == "DRAINING"
    harness.update("n1", (first, 0, 0), TaskState.COMPLETED, 0)
    assert harness.state.node_state("n1") == "DRAINED"
    harness.state.resume("n1")
    harness.schedule()
    assert harness.launches() == [("n1", (second, 0, 0))]


def test_drain_deadline_stops_running_work_and_requeues_it(harness, clock):
    harness.register("n1")
    harness.register("n2")
    harness.state.drain("n2", "filler", None)
    [job] = harness.state.submit(spec(requeue=False), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    harness.state.resume("n2")
    harness.state.drain("n1", "reboot", 30)
    clock.advance(10)
    harness.beat("n1", "n2")
    harness.state.tick()
    assert harness.kills() == []
    clock.advance(25)
    harness.beat("n1", "n2")
    harness.state.tick()
    assert harness.kills() == [("n1", (job, 0, 0))]
    harness.update("n1", (job, 0, 0), TaskState.CANCELLED)
    record = harness.state.jobs[job]
    assert record.state is JobState.PENDING and record.attempt == 1
    harness.schedule()
    assert harness.launches() == [("n2", (job, 0, 1))]


def test_restart_keeps_every_acknowledged_job_and_placement(harness):
    harness.register("n1", cpus=2)
    ids = [harness.state.submit(spec(name=f"j{i}"), "alice")[0] for i in range(5)]
    harness.schedule()
    launches = harness.launches()
    harness.commit()
    harness.state.submit(spec(name="unacknowledged"), "alice")  # never committed: as if killed mid-turn
    harness.restart()
    assert sorted(harness.state.jobs) == ids
    assert {k for k, t in harness.state.tasks.items()} == {key for _, key in launches}
    assert [harness.state.jobs[i].state for i in ids] == [JobState.STARTING] * 2 + [JobState.PENDING] * 3
    assert harness.state.views["n1"].idle_cores == 0


def test_after_restart_unconfirmed_launches_are_resent_and_running_ones_are_not(harness):
    harness.register("n1", cpus=2)
    a, b = (harness.state.submit(spec(name=n), "alice")[0] for n in ("a", "b"))
    harness.schedule()
    harness.update("n1", (a, 0, 0), TaskState.RUNNING)
    harness.commit()
    harness.orders()
    harness.restart()
    harness.beat("n1")
    assert harness.orders()[0][1].__class__.__name__ == "Reregister"
    harness.register("n1", cpus=2, running=((a, 0, 0),))
    assert harness.launches() == [("n1", (b, 0, 0))]


def test_task_the_agent_lost_is_failed_after_its_next_heartbeat(harness):
    harness.register("n1", cpus=2)
    [job] = harness.state.submit(spec(requeue=False), "alice")
    harness.schedule()
    harness.update("n1", (job, 0, 0), TaskState.RUNNING)
    harness.register("n1", cpus=2, running=())
    harness.beat("n1")
    assert harness.state.ended[job][0] is JobState.NODE_FAIL


def test_final_update_resent_after_registration_ends_the_job(harness):
    harness.register("n1", cpus=2)
    [job] = harness.state.submit(spec(), "alice")
    harness.schedule()
    harness.update("n1", (job, 0, 0), TaskState.RUNNING)
    harness.register("n1", cpus=2, running=())
    harness.update("n1", (job, 0, 0), TaskState.COMPLETED, 0)
    harness.beat("n1")
    assert harness.state.ended[job] == (JobState.COMPLETED, 0)


def test_launch_order_is_the_same_when_resent(harness):
    harness.register("n1")
    [job] = harness.state.submit(spec(), "alice")
    harness.schedule()
    [(_, first)] = harness.orders(Launch)
    harness.register("n1")
    [(_, again)] = harness.orders(Launch)
    assert first == again
    assert first.env["RADE_JOB_ID"] == str(job) and first.cpus


def test_dependency_holds_until_afterok_job_completes(harness):
    harness.register("n1")
    [first] = harness.state.submit(spec(), "alice")
    [second] = harness.state.submit(spec(depends_on=[{"afterok": [first]}]), "alice")
    harness.schedule()
    assert [key[0] for _, key in harness.launches()] == [first]
    assert harness.state.jobs[second].reason == "Dependency"
    harness.update("n1", (first, 0, 0), TaskState.RUNNING)
    harness.update("n1", (first, 0, 0), TaskState.COMPLETED, 0)
    harness.schedule()
    assert [key[0] for _, key in harness.launches()] == [second]


def test_dependency_on_a_failed_job_is_never_satisfied(harness):
    harness.register("n1")
    [first] = harness.state.submit(spec(), "alice")
    [second] = harness.state.submit(spec(depends_on=[{"afterok": [first]}]), "alice")
    harness.schedule()
    harness.update("n1", (first, 0, 0), TaskState.FAILED, 1)
    harness.schedule()
    assert harness.state.ended[second][0] is JobState.CANCELLED
    assert harness.store.job(second)[0].reason.startswith("DependencyNeverSatisfied")


def test_cancel_pending_is_immediate_and_running_goes_through_the_agent(harness):
    harness.register("n1", cpus=1)
    [running] = harness.state.submit(spec(), "alice")
    [waiting] = harness.state.submit(spec(), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    assert harness.state.cancel(waiting, "alice", admin=False) == "cancelled"
    assert harness.state.ended[waiting][0] is JobState.CANCELLED
    assert harness.state.cancel(running, "alice", admin=False) == "cancelling"
    assert harness.kills() == [("n1", (running, 0, 0))]
    harness.update("n1", (running, 0, 0), TaskState.CANCELLED)
    assert harness.state.ended[running][0] is JobState.CANCELLED
    assert harness.store.job(running)[0].reason == "cancelled by alice"  # says who, not "cancelling" forever


def test_only_the_owner_or_root_may_cancel(harness):
    import pytest

    from scheduler.state import NotAllowed

    [job] = harness.state.submit(spec(), "alice")
    with pytest.raises(NotAllowed):
        harness.state.cancel(job, "bob", admin=False)
    assert harness.state.cancel(job, "root", admin=True) == "cancelled"


def test_array_makes_one_job_per_index(harness):
    harness.register("n1")
    ids = harness.state.submit(spec(array="0-2"), "alice")
    harness.schedule()
    launches = harness.orders(Launch)
    assert len(ids) == 3
    assert sorted(m.env["RADE_ARRAY_INDEX"] for _, m in launches) == ["0", "1", "2"]


def test_mpi_job_gets_one_task_per_node_with_its_ranks(harness):
    for name in ("n1", "n2", "n3"):
        harness.register(name, cpus=4)
    harness.state.submit(spec(mpi={"ranks": 6, "ranks_per_node": 2}), "alice")
    harness.schedule()
    launches = harness.orders(Launch)
    assert sorted(node for node, _ in launches) == ["n1", "n2", "n3"]
    assert all(m.ranks == 2 and len(m.cpus) == 2 for _, m in launches)
    assert launches[0][1].nodes == ("n1", "n2", "n3")


def test_heartbeat_listing_an_old_attempt_gets_it_killed(harness, clock):
    from jobs.messages import Heartbeat, TaskRef

    harness.register("n1")
    [job] = harness.state.submit(spec(), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    harness.desk.heartbeat("n1", Heartbeat(node="n1", seq=2, running=(TaskRef(job, 0, 0), TaskRef(99, 0, 3))))
    assert harness.kills() == [("n1", (99, 0, 3))]


def test_numa_layout_from_registration_keeps_a_task_on_one_numa_node(harness):
    harness.register("n1", cpus=8, numa=((0, 2, 4, 6), (1, 3, 5, 7)))
    harness.state.submit(spec(cpus=1), "alice")
    harness.state.submit(spec(cpus=4), "alice")
    harness.schedule()
    small, big = (m for _, m in harness.orders(Launch))
    assert set(big.cpus) in ({0, 2, 4, 6}, {1, 3, 5, 7}) and small.cpus[0] not in big.cpus


def test_array_limit_runs_at_most_n_at_once(harness):
    harness.register("n1", cpus=8)
    ids = harness.state.submit(spec(array="0-3%2"), "alice")
    harness.schedule()
    launches = harness.launches()
    assert [key[0] for _, key in launches] == ids[:2]
    assert harness.state.jobs[ids[2]].reason == "JobArrayTaskLimit"
    harness.run_all(launches)
    harness.update("n1", launches[0][1], TaskState.COMPLETED, 0)
    harness.schedule()
    assert [key[0] for _, key in harness.launches()] == [ids[2]]


def test_node_registering_again_with_fewer_cores_than_its_tasks_hold_is_taken_as_it_is(harness):
    harness.register("n1", cpus=4)
    [job] = harness.state.submit(spec(cpus=4), "alice")
    harness.schedule()
    harness.run_all(harness.launches())
    harness.register("n1", cpus=2, running=((job, 0, 0),))
    assert len(harness.state.views["n1"].cores) == 2
    assert harness.state.jobs[job].state is JobState.RUNNING
