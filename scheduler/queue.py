"""The queue and one scheduling pass: which pending jobs start now, and why the others wait.

Order is priority (higher first), then submission. A pass walks the queue over a private copy of the
nodes, placing each job with `placement.place` and counting what it takes, so later jobs see earlier ones.
It returns plans and reasons; it commits nothing (the state's writer does, after re-checking).

No starvation: the first job in the queue that waits only for resources gets a reservation on the nodes it
would use once they empty (the emptiest first); jobs behind it may not use those nodes, and they show
reason Priority when that is all that holds them. Jobs of a shape that already failed in this pass are not
tried again: they would fail the same way, and skipping them keeps a long queue cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from scheduler.placement import PendingReason, Plan, Rejection, place, try_place
from scheduler.resources import JobDemand, NodeView


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A pending job as the queue sees it. `held` is set when something other than nodes holds it."""

    job_id: int
    priority: int
    submit_seq: int
    demand: JobDemand
    held: PendingReason | None = None
    held_detail: str = ""

    @property
    def order_key(self) -> tuple[int, int]:
        return (-self.priority, self.submit_seq)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass decided: plans in queue order, the reason each other job waits, the reservation."""

    plans: tuple[Plan, ...]
    waiting: Mapping[int, Rejection] = field(default_factory=dict)
    reservation: Mapping[str, int] = field(default_factory=dict)
    failed: Mapping[tuple, Rejection] = field(default_factory=dict)


def queue_order(jobs: Iterable[QueuedJob]) -> list[QueuedJob]:
    """Priority first (higher first), then submission order."""
    # Two stable sorts on plain attributes: the queue usually comes in submission order already (a run
    # timsort passes through), and no key tuple is built per job.
    by_submission = sorted(jobs, key=attrgetter("submit_seq"))
    return sorted(by_submission, key=attrgetter("priority"), reverse=True)


def schedule_pass(jobs: Iterable[QueuedJob], nodes: Sequence[NodeView] | Mapping[str, NodeView],
                  limit: int | None = None, reserved: Mapping[str, int] | None = None,
                  failed: Mapping[tuple, Rejection] | None = None,
                  open_names: Sequence[str] | None = None) -> PassResult:
    """Place what fits of the queue on `nodes`, in queue order; at most `limit` plans when given.

    `nodes` is a sequence of views in placement order, or a mapping by name in name order. `open_names`,
    when the caller keeps it, lists in order the nodes that take work and are not full. `reserved` and
    `failed` carry a previous pass's reservation and failed shapes over to a pass that looks only at newly
    submitted jobs, valid as long as no node and no running task changed since.
    """
    plans: list[Plan] = []
    waiting: dict[int, Rejection] = {}
    reserved = dict(reserved or {})
    failed = dict(failed or {})
    views: dict[str, NodeView] | None = None
    names: list[str] = []
    opened: list[str] = []
    for job in queue_order(jobs):
        if job.held is not None:
            waiting[job.job_id] = Rejection(job.job_id, job.held, job.held_detail)
            continue
        if limit is not None and len(plans) >= limit:
            waiting[job.job_id] = Rejection(job.job_id, PendingReason.PRIORITY, "waiting for the next pass")
            continue
        shape = job.demand.shape
        if shape in failed:
            prior = failed[shape]
            waiting[job.job_id] = Rejection(job.job_id, prior.reason, prior.detail, prior.nodes)
            continue
        if views is None:
            # Copied once per pass, and only when some job needs them: the pass works on its own copy.
            views = dict(nodes) if isinstance(nodes, Mapping) else {view.name: view for view in nodes}
            names = sorted(views) if isinstance(nodes, Mapping) else [view.name for view in nodes]
            opened = list(open_names) if open_names is not None else [
                n for n in names if views[n].blocked is None and not views[n].is_full]
        plan = try_place(job.demand, (views[n] for n in opened), reserved)
        if plan is not None:
            plans.append(plan)
            for grant in plan.grants:
                views[grant.node] = views[grant.node].with_grant(grant)
                if views[grant.node].is_full:
                    opened.remove(grant.node)
            continue
        # Ask again over every node, full ones included, so that each node's reason is on record.
        outcome = place(job.demand, [views[n] for n in names], reserved)
        if isinstance(outcome, Plan):  # cannot happen: full nodes take nothing; kept for safety
            plans.append(outcome)
            continue
        failed[shape] = outcome
        waiting[job.job_id] = outcome
        if outcome.reason is PendingReason.RESOURCES and not reserved:
            reserved = _reserve(job.demand, [views[n] for n in names])
            if reserved:
                # Later jobs now meet a different cluster: forget shapes that failed before it existed.
                failed.clear()
                failed[shape] = outcome
    return PassResult(tuple(plans), waiting, reserved, failed)


def _reserve(demand: JobDemand, nodes: Sequence[NodeView]) -> dict[str, int]:
    """The nodes a blocked job will take when their work ends, emptiest (soonest free) first."""
    usable = sorted((v for v in nodes if v.blocked is None), key=lambda v: (v.cpus_used_milli, v.memory_used, v.name))
    outcome = place(demand, [v.emptied() for v in usable])
    if not isinstance(outcome, Plan):
        return {}
    return {name: demand.job_id for name in outcome.nodes}
