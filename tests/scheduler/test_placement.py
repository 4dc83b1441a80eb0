"""Gang placement over plain node views: every task or none, exclusive cores, sharing, constraints,
policies, MPI grouping, and a reason for every refusal."""

from __future__ import annotations

from scheduler.placement import PendingReason, Plan, Rejection, place
from scheduler.resources import GIB, JobDemand, NodeView, TaskDemand


def node(name: str, cores: int = 4, memory: int = 8 * GIB, **kw) -> NodeView:
    return NodeView(name=name, cores=tuple(range(cores)), memory=memory, **kw)


def demand(job_id: int = 1, cpus: float = 1, memory: int = GIB, **kw) -> JobDemand:
    return JobDemand(job_id=job_id, per_task=TaskDemand(int(cpus * 1000), memory, kw.pop("gpus", 0)), **kw)


def test_gang_places_every_task_or_none():
    nodes = [node("n1", 4), node("n2", 4)]
    assert isinstance(place(demand(tasks=8), nodes), Plan)
    refused = place(demand(tasks=9), nodes)
    assert isinstance(refused, Rejection)
    assert refused.reason is PendingReason.RESOURCES


def test_whole_cpus_get_cores_no_other_task_shares():
    view = node("n1", 4)
    view, first = view.take(TaskDemand(2000, GIB))
    view, second = view.take(TaskDemand(2000, GIB))
    assert set(first.cores).isdisjoint(second.cores)
    assert len(first.cores) == len(second.cores) == 2
    assert view.shortfall(TaskDemand(1000, GIB)) is not None
    assert view.shortfall(TaskDemand(500, GIB)) is not None


def test_fractional_cpus_share_a_core_and_leave_whole_cores_free():
    view = node("n1", 2)
    view, a = view.take(TaskDemand(500, 0))
    view, b = view.take(TaskDemand(500, 0))
    assert a.cores == b.cores
    assert view.idle_cores == 1
    view, c = view.take(TaskDemand(1000, 0))
    assert set(c.cores).isdisjoint(a.cores)
    assert view.is_full


def test_released_grant_frees_its_cores_memory_and_gpus():
    view = node("n1", 4, gpus=(0, 1))
    taken, grant = view.take(TaskDemand(3000, 2 * GIB, 1))
    assert taken.give_back(grant) == view


def test_memory_and_gpus_are_accounted():
    nodes = [node("n1", 8, 4 * GIB, gpus=(0,)), node("n2", 8, 16 * GIB, gpus=(0, 1))]
    plan = place(demand(memory=6 * GIB, gpus=2), nodes)
    assert isinstance(plan, Plan) and plan.nodes == ("n2",) and plan.grants[0].gpus == (0, 1)
    refused = place(demand(memory=6 * GIB, gpus=2, tasks=2), nodes)
    assert isinstance(refused, Rejection)
    assert "memory" in refused.nodes["n1"]


def test_constraints_and_exclude_pick_nodes_and_explain_the_rest():
    nodes = [node("n1", labels={"arch": "aarch64"}), node("n2", labels={"arch": "x86_64"}),
             node("n3", labels={"arch": "x86_64"})]
    plan = place(demand(constraints={"arch": "x86_64"}, exclude=frozenset({"n2"})), nodes)
    assert isinstance(plan, Plan) and plan.nodes == ("n3",)
    refused = place(demand(constraints={"arch": "riscv"}), nodes)
    assert isinstance(refused, Rejection) and refused.reason is PendingReason.CONSTRAINTS
    assert "arch=riscv" in refused.nodes["n1"] and set(refused.nodes) == {"n1", "n2", "n3"}


def test_pack_uses_fewest_nodes_and_spread_uses_most():
    nodes = [node("n1", 4), node("n2", 4), node("n3", 4)]
    packed = place(demand(tasks=4, policy="pack"), nodes)
    spread = place(demand(tasks=3, policy="spread"), nodes)
    assert isinstance(packed, Plan) and packed.nodes == ("n1",)
    assert isinstance(spread, Plan) and sorted(spread.nodes) == ["n1", "n2", "n3"]


def test_drained_and_down_nodes_take_nothing_and_say_so():
    nodes = [node("n1", blocked="draining"), node("n2", blocked="draining")]
    refused = place(demand(), nodes)
    assert isinstance(refused, Rejection) and refused.reason is PendingReason.NODES_DRAINED
    assert refused.nodes["n1"] == "draining"
    down = place(demand(), [node("n1", blocked="down")])
    assert isinstance(down, Rejection) and down.reason is PendingReason.NODES_DOWN


def test_mpi_ranks_per_node_make_one_task_per_node():
    nodes = [node(f"n{i}", 4) for i in range(1, 5)]
    plan = place(demand(ranks=6, ranks_per_node=2), nodes)
    assert isinstance(plan, Plan)
    assert [g.ranks for g in plan.grants] == [2, 2, 2]
    assert len(set(plan.nodes)) == 3
    assert all(len(g.cores) == 2 for g in plan.grants)


def test_mpi_without_ranks_per_node_fills_nodes():
    nodes = [node("n1", 4), node("n2", 4), node("n3", 4)]
    plan = place(demand(ranks=6), nodes)
    assert isinstance(plan, Plan)
    assert [(g.node, g.ranks) for g in plan.grants] == [("n1", 4), ("n2", 2)]


def test_mpi_nodes_spread_ranks_evenly():
    nodes = [node(f"n{i}", 8) for i in range(1, 5)]
    plan = place(demand(ranks=8, nodes=4), nodes)
    assert isinstance(plan, Plan) and [g.ranks for g in plan.grants] == [2, 2, 2, 2]


def test_reserved_nodes_refuse_other_jobs_with_reason_priority():
    nodes = [node("n1", 4), node("n2", 4)]
    refused = place(demand(job_id=2, tasks=5), nodes, reserved={"n1": 1})
    assert isinstance(refused, Rejection) and refused.reason is PendingReason.PRIORITY
    assert refused.nodes["n1"] == "reserved for job 1"
    assert isinstance(place(demand(job_id=1, tasks=5), nodes, reserved={"n1": 1}), Plan)


def test_job_larger_than_the_cluster_says_so():
    refused = place(demand(cpus=64), [node("n1", 4)])
    assert isinstance(refused, Rejection) and refused.reason is PendingReason.RESOURCES
    assert "larger" in refused.detail


def test_exclusive_cores_stay_within_one_numa_node_when_they_fit():
    view = NodeView(name="n1", cores=tuple(range(8)), memory=8 * GIB, numa=((0, 1, 2, 3), (4, 5, 6, 7)))
    view, first = view.take(TaskDemand(1000, 0))
    view, second = view.take(TaskDemand(3000, 0))
    view, third = view.take(TaskDemand(4000, 0))
    assert set(first.cores) | set(second.cores) == {0, 1, 2, 3}
    assert third.cores == (4, 5, 6, 7)


def test_a_task_larger_than_a_numa_node_spans_several():
    view = NodeView(name="n1", cores=tuple(range(8)), memory=8 * GIB, numa=((0, 1, 2, 3), (4, 5, 6, 7)))
    _, grant = view.take(TaskDemand(6000, 0))
    assert len(grant.cores) == 6
