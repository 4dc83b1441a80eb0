"""The scheduling policies inside the scheduler's state, driven by agents' messages and a hand-moved clock:
backfill around a reservation, fair share, dependencies that can never be met, throttled arrays, topology,
and accounting rows that match what ran."""

from __future__ import annotations

from jobs.messages import Launch, TaskUpdate
from jobs.states import JobState, TaskState
from scheduler import views
from scheduler.accounting import acct_rows
from scheduler.fairshare import PriorityWeights
from scheduler.placement import PendingReason
from scheduler.policy import PolicyConfig

from ..conftest import spec


def finish(h, node: str, key: tuple[int, int, int], code: int = 0, cpu: float = 0.0, peak: int = 0) -> None:
    h.seq += 1
    h.desk.task_update(node, TaskUpdate(*key, seq=h.seq, state=TaskState.COMPLETED if code == 0 else
                                        TaskState.FAILED, node=node, exit_code=code, cpu_seconds=cpu,
                                        peak_memory=peak))


def test_short_job_backfills_into_the_hole_and_the_reserved_job_starts_when_promised(make_harness, clock):
    h = make_harness()
    h.register("n1")
    h.register("n2")
    [long] = h.state.submit(spec("long", cpus=4, time_limit="10m"), "alice")
    h.schedule()
    h.run_all(h.launches())
    began = clock.time()
    [wide] = h.state.submit(spec("wide", cpus=4, tasks=2, time_limit="1h"), "alice")
    [short] = h.state.submit(spec("short", cpus=2, time_limit="5m"), "bob")
    [slow] = h.state.submit(spec("slow", cpus=2, time_limit="2h"), "bob")
    h.schedule()
    launched = h.launches()
    assert [key[0] for _, key in launched] == [short]
    detail = views.job_detail(h.state, wide)
    assert detail["expected_start"] == began + 600
    assert h.state.jobs[slow].reason == PendingReason.PRIORITY.value
    h.run_all(launched)
    clock.advance(300)
    finish(h, launched[0][0], launched[0][1])
    h.schedule()
    assert h.launches() == []  # the hole closed again: nothing may delay the wide job
    clock.advance(300)
    finish(h, "n1", (long, 0, 0))
    h.schedule()
    assert {key[0] for _, key in h.launches()} == {wide}
    assert clock.time() <= detail["expected_start"]


def test_fair_share_starts_the_light_users_job_before_the_heavy_users(make_harness, clock):
    weights = PriorityWeights(job=100_000.0, age=0.0, fairshare=10_000.0, half_life=3600.0)
    h = make_harness(PolicyConfig(weights=weights))
    h.register("n1")
    [before] = h.state.submit(spec("before", cpus=4), "heavy")
    h.schedule()
    h.run_all(h.launches())
    clock.advance(1000)
    finish(h, "n1", (before, 0, 0))
    [first] = h.state.submit(spec("mine", cpus=4), "heavy")
    [second] = h.state.submit(spec("mine", cpus=4), "light")
    h.schedule()
    assert [key[0] for _, key in h.launches()] == [second]
    factors = h.state.policy.factors
    assert factors[first].fairshare < factors[second].fairshare
    rows = {r["id"]: r for r in views.queue_rows(h.state, None, False)}
    assert rows[first]["factors"]["priority"] > 0 and rows[first]["factors"]["fairshare"] < 1


def test_dependency_chains_and_the_one_that_can_never_be_met(make_harness):
    h = make_harness()
    h.register("n1")
    [a] = h.state.submit(spec("a", cpus=1), "alice")
    [ok] = h.state.submit(spec("ok", cpus=1, depends_on=[{"afterok": a}]), "alice")
    [notok] = h.state.submit(spec("notok", cpus=1, depends_on=[{"afternotok": a}]), "alice")
    [anyway] = h.state.submit(spec("anyway", cpus=1, depends_on=[{"afterany": [ok, notok]}]), "alice")
    [ghost] = h.state.submit(spec("ghost", cpus=1, depends_on=[{"afterok": 999}]), "alice")
    h.schedule()
    assert [key[0] for _, key in h.launches()] == [a]
    assert h.state.ended[ghost][0] is JobState.CANCELLED
    h.run_all([("n1", (a, 0, 0))])
    finish(h, "n1", (a, 0, 0), code=1)
    h.schedule()
    assert h.state.ended[ok][0] is JobState.CANCELLED
    stored = h.store.job(ok)[0]
    assert "DependencyNeverSatisfied" in stored.reason and f"afterok:{a}" in stored.reason
    assert [key[0] for _, key in h.launches()] == [notok]
    h.run_all([("n1", (notok, 0, 0))])
    finish(h, "n1", (notok, 0, 0))
    h.schedule()
    assert [key[0] for _, key in h.launches()] == [anyway]


def test_array_runs_at_most_its_limit_at_once_and_cancels_as_one(make_harness):
    h = make_harness()
    h.register("n1", cpus=8)
    ids = h.state.submit(spec("sweep", cpus=1, array="0-5%2"), "alice")
    h.schedule()
    launches = h.orders(Launch)
    assert [m.env["RADE_ARRAY_INDEX"] for _, m in launches] == ["0", "1"]
    h.run_all([(n, (m.job_id, m.task_id, m.attempt)) for n, m in launches])
    finish(h, "n1", (ids[0], 0, 0))
    h.schedule()
    assert [m.env["RADE_ARRAY_INDEX"] for _, m in h.orders(Launch)] == ["2"]
    rows = views.queue_rows(h.state, None, False)
    assert [r["array_of"] for r in rows] == [ids[0]] * 5
    h.state.cancel(ids[0], "alice", admin=False)
    h.schedule()
    assert all(h.state.ended.get(i, (None,))[0] is JobState.CANCELLED or i in h.state.jobs for i in ids[1:])
    assert not [i for i in ids[3:] if i in h.state.jobs]


def test_pack_job_lands_under_one_leaf_switch_and_show_gives_its_hops(make_harness, tmp_path):
    topology = tmp_path / "topology.conf"
    topology.write_text("SwitchName=s0 Nodes=n[1-3]\nSwitchName=s1 Nodes=n[4-5]\nSwitchName=top Switches=s[0-1]\n")
    h = make_harness(PolicyConfig(topology=str(topology)))
    for i in range(1, 6):
        h.register(f"n{i}")
    # n1 and n2 taken: name order alone would put the pair on n3 (under s0) and n4 (under s1).
    h.state.submit(spec("fill", cpus=4, tasks=2, placement={"exclude": ["n3", "n4", "n5"]}), "alice")
    h.schedule()
    h.run_all(h.launches())
    [job] = h.state.submit(spec("pair", cpus=4, tasks=2), "alice")
    h.schedule()
    assert {node for node, _ in h.launches()} == {"n4", "n5"}
    assert views.job_detail(h.state, job)["hops"] == 1


def test_accounting_rows_match_what_ran(make_harness, clock):
    h = make_harness()
    h.register("n1")
    [job] = h.state.submit(spec("work", cpus=2, tasks=2), "alice")
    submitted = clock.time()
    h.schedule()
    launched = h.launches()
    clock.advance(5)
    h.run_all(launched)
    started = clock.time()
    clock.advance(60)
    for node, key in launched:
        finish(h, node, key, cpu=50.0 + key[1], peak=(100 + key[1]) << 20)
    h.commit()
    [row] = acct_rows([h.store.job(job)], clock.time(), user="alice")
    assert (row.job, row.user, row.state, row.exit_code, row.nodes) == (str(job), "alice", "COMPLETED", 0, ("n1",))
    assert (row.submitted_at, row.started_at, row.elapsed) == (submitted, started, 60.0)
    assert row.cpu_seconds == 101.0 and row.peak_memory == 101 << 20
    assert row.alloc_cpus == 4 and row.alloc_cpu_seconds == 240.0
    assert acct_rows([h.store.job(job)], clock.time(), user="bob") == []
