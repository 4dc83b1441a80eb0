"""Gang placement: a pure function from a job's demand and a read-only snapshot of the nodes to a plan.

Either every task of the job gets a node (a `Plan`), or none does (a `Rejection` that says, for every node,
why it was turned down, and for the job the one reason a user reads in `rade queue`). Nothing here writes:
the state's single writer re-checks a plan against the live nodes before committing it.

Policies: `pack` fills nodes in name order, as many tasks on each as fit, so a job uses the fewest nodes and
big nodes stay whole for big jobs; `spread` puts one task on each node, emptiest first, round after round.
MPI jobs become one task per node holding that node's ranks: `ranks_per_node` of them when given (or
`ceil(ranks / nodes)` when `nodes` is), else as many as fit on each node in turn ("fill nodes").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.resources import Grant, JobDemand, NodeView, TaskDemand


class PendingReason(str, enum.Enum):
    """Why a PENDING job is not running, in Slurm's words where Slurm has one."""

    NONE = "None"
    RESOURCES = "Resources"
    CONSTRAINTS = "Constraints"
    PRIORITY = "Priority"
    DEPENDENCY = "Dependency"
    DEPENDENCY_NEVER_SATISFIED = "DependencyNeverSatisfied"
    NODES_DRAINED = "NodesDrained"
    NODES_DOWN = "NodesDown"
    NO_NODES = "NoNodes"
    ARRAY_LIMIT = "JobArrayTaskLimit"


# What `NodeView.blocked` says of a node that no agent answers for (as opposed to one an admin drained).
UNREACHABLE = frozenset({"down", "not connected"})


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each task of a job goes; `grants[i]` is task i's."""

    job_id: int
    grants: tuple[Grant, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.node for g in self.grants))


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a job cannot be placed now: the job's reason and every node's."""

    job_id: int
    reason: PendingReason
    detail: str
    nodes: Mapping[str, str] = field(default_factory=dict)


def place(demand: JobDemand, nodes: Sequence[NodeView], reserved: Mapping[str, int] | None = None) -> Plan | Rejection:
    """Place every task of `demand` on `nodes` (in the order given), or say why not.

    `reserved` maps a node to the job holding a reservation on it; other jobs may not use it.
    """
    plan = try_place(demand, nodes, reserved)
    return plan if plan is not None else _reject(demand, nodes, reserved or {})


def try_place(demand: JobDemand, nodes: Iterable[NodeView], reserved: Mapping[str, int] | None = None) -> Plan | None:
    """`place` without the explanation: the plan, or None. `nodes` may be lazy: `pack` stops reading at the
    first nodes that hold the whole job, which keeps one-task jobs cheap on big clusters."""
    reserved = reserved or {}
    eligible = (view for view in nodes if _refusal(demand, view, reserved) is None)
    grants = _assign(demand, eligible)
    return Plan(demand.job_id, grants) if grants is not None else None


def _refusal(demand: JobDemand, view: NodeView, reserved: Mapping[str, int]) -> str | None:
    """Why a node may not take any task of this job regardless of its load, or None."""
    if view.blocked is not None:
        return view.blocked
    mismatch = _mismatch(demand, view)
    if mismatch is not None:
        return mismatch
    holder = reserved.get(view.name)
    if holder is not None and holder != demand.job_id:
        return f"reserved for job {holder}"
    return None


def _mismatch(demand: JobDemand, view: NodeView) -> str | None:
    """Why the job's constraints or exclusions rule a node out, or None."""
    if view.name in demand.exclude:
        return "excluded by the job"
    for key, wanted in demand.constraints.items():
        have = view.labels.get(key)
        if have != wanted:
            return f"constraint {key}={wanted} (node has {key}={have if have is not None else 'unset'})"
    return None


def _assign(demand: JobDemand, eligible: Iterable[NodeView]) -> tuple[Grant, ...] | None:
    if demand.ranks is None:
        return _assign_copies(demand, eligible)
    return _assign_ranks(demand, eligible)


def _assign_copies(demand: JobDemand, eligible: Iterable[NodeView]) -> tuple[Grant, ...] | None:
    """Non-MPI: `tasks` identical containers, several per node allowed."""
    per = demand.per_task
    wanted = demand.tasks
    grants: list[Grant] = []
    max_nodes = demand.nodes or wanted
    if demand.policy == "spread":
        ring = sorted(eligible, key=lambda v: (-v.idle_cores, -v.memory_free, v.name))[:max_nodes]
        views = {v.name: v for v in ring}
        while len(grants) < wanted:
            placed = False
            for view in ring:
                current = views[view.name]
                if len(grants) < wanted and current.shortfall(per) is None:
                    views[view.name], grant = current.take(per)
                    grants.append(grant)
                    placed = True
            if not placed:
                return None
        return tuple(grants)
    used = 0
    for view in eligible:
        if used == max_nodes:
            break
        took = False
        while len(grants) < wanted and view.shortfall(per) is None:
            view, grant = view.take(per)
            grants.append(grant)
            took = True
        used += took
        if len(grants) == wanted:
            return tuple(grants)
    return None


def _assign_ranks(demand: JobDemand, eligible: Iterable[NodeView]) -> tuple[Grant, ...] | None:
    """MPI: one container per node holding that node's ranks; no two tasks of the job on one node."""
    ranks = demand.ranks or 1
    per_node = demand.ranks_per_node
    if per_node is None and demand.nodes:
        per_node = -(-ranks // demand.nodes)
    order = eligible
    if demand.policy == "spread":
        order = sorted(eligible, key=lambda v: (-v.idle_cores, -v.memory_free, v.name))
    grants: list[Grant] = []
    left = ranks
    for view in order:
        if left == 0:
            break
        if demand.nodes and len(grants) == demand.nodes:
            break
        if per_node is not None:
            count = min(per_node, left)
            if view.shortfall(demand.per_task.times(count)) is not None:
                continue
        else:
            count = _ranks_that_fit(demand.per_task, view, left)
            if count == 0:
                continue
        _, grant = view.take(demand.per_task.times(count))
        grants.append(Grant(grant.node, grant.cores, grant.cpus_milli, grant.memory, grant.gpus, ranks=count))
        left -= count
    return tuple(grants) if left == 0 else None


def _ranks_that_fit(per_rank: TaskDemand, view: NodeView, most: int) -> int:
    """The most ranks (up to `most`) that fit together in one container on this node."""
    bound = most
    if per_rank.memory:
        bound = min(bound, view.memory_free // per_rank.memory)
    if per_rank.gpus:
        bound = min(bound, len(view.gpus_free) // per_rank.gpus)
    if per_rank.cpus_milli:
        bound = min(bound, len(view.cores) * 1000 // per_rank.cpus_milli)
    while bound > 0 and view.shortfall(per_rank.times(bound)) is not None:
        bound -= 1
    return max(bound, 0)


def _reject(demand: JobDemand, nodes: Sequence[NodeView], reserved: Mapping[str, int]) -> Rejection:
    """Say why: the refusal of every node, then the one reason that matters most to the user."""
    why: dict[str, str] = {}
    for view in nodes:
        refusal = _refusal(demand, view, reserved)
        if refusal is None:
            refusal = view.shortfall(_smallest_task(demand)) or "the job's tasks do not fit on the nodes left"
        why[view.name] = refusal
    if not nodes:
        return Rejection(demand.job_id, PendingReason.NO_NODES, "no node has registered", why)
    matching = [v for v in nodes if _mismatch(demand, v) is None]
    if not matching:
        return Rejection(demand.job_id, PendingReason.CONSTRAINTS,
                         "no node matches the job's constraints and exclusions", why)
    usable = [v for v in matching if v.blocked is None]
    if not usable:
        down = all(v.blocked in UNREACHABLE for v in matching)
        reason = PendingReason.NODES_DOWN if down else PendingReason.NODES_DRAINED
        return Rejection(demand.job_id, reason, "every matching node is drained or down", why)
    if _assign(demand, [v.emptied() for v in usable]) is None:
        return Rejection(demand.job_id, PendingReason.RESOURCES,
                         "the job is larger than all matching nodes together", why)
    if reserved and _assign(demand, usable) is not None:
        holders = sorted({reserved[v.name] for v in usable if v.name in reserved} - {demand.job_id})
        return Rejection(demand.job_id, PendingReason.PRIORITY,
                         f"nodes are reserved for job {', '.join(map(str, holders))}, ahead in the queue", why)
    return Rejection(demand.job_id, PendingReason.RESOURCES, "waiting for running work to free resources", why)


def _smallest_task(demand: JobDemand) -> TaskDemand:
    return demand.per_task if demand.ranks is None else demand.per_task.times(demand.ranks_per_node or 1)
