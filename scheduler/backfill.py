"""Backfill: a scheduling pass that lets small jobs start in the holes ahead of a big job without delaying it.

EASY backfill (Lifka's, as Slurm's sched/backfill does it): walk the queue in priority order; the first job
that cannot start now gets a reservation at the earliest time it can start, found by releasing the running
work in the order of its estimated ends (start plus time limit: the agents stop a task at its limit, so
the estimate is an upper bound). A job further down starts now only if it fits on what is free and does
not delay the reservation: it avoids the reserved nodes, or it ends (by its own limit) before the
reservation starts. With `depth` K the first K blocked jobs each get a reservation (conservative backfill
for them), each avoiding the ones before it.

`mode="fifo"` is the strict baseline: the pass stops at the first job that cannot start (the jobs behind it
are not looked at and get no reason). A job without a
time limit is taken to run forever: it never ends before a reservation, and what it holds is never freed
in the estimate. Pure like the rest of the queue: views and times in, plans and reasons out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.placement import PendingReason, Plan, Rejection, place, try_place
from scheduler.queue import QueuedJob, queue_order
from scheduler.resources import Grant, JobDemand, NodeView

# How many distinct job shapes a pass explains node by node (see `_explain`): each costs a placement
# over every node, twice, so only the head of the queue gets it.
EXPLAINED_SHAPES = 2

# A placement of one job on nodes given in order, honouring a node -> holder map; None when it does not fit.
Placer = Callable[[JobDemand, Sequence[NodeView], Mapping[str, int]], "Plan | None"]


@dataclass(frozen=True, slots=True)
class Running:
    """Work in progress as backfill sees it: what it holds, and when it will have ended at the latest."""

    end: float
    grant: Grant


@dataclass(frozen=True, slots=True)
class Reservation:
    """A blocked job's promise: these nodes from `start` until `end` (start plus its limit). When work it
    waits for has no time limit the start cannot be known: `known` is False, and the nodes are held from
    now on (no job may take them in the meantime: the job does not starve)."""

    job_id: int
    start: float
    end: float
    nodes: tuple[str, ...]
    known: bool = True


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What one pass decided: plans in the order made, why each other job waits, the reservations."""

    plans: tuple[Plan, ...]
    waiting: Mapping[int, Rejection] = field(default_factory=dict)
    reservations: tuple[Reservation, ...] = ()
    backfilled: frozenset[int] = frozenset()
    # What the pass learnt of job shapes (those that did not fit, and why), valid for a later pass that
    # looks only at new submissions while nothing else changed: hand it back as `memo`.
    memo: tuple[frozenset, Mapping[tuple, Rejection]] = (frozenset(), {})

    @property
    def expected_start(self) -> dict[int, float]:
        return {r.job_id: r.start for r in self.reservations if r.known}

    @property
    def reservation(self) -> dict[str, int]:
        """Node -> the job holding it (the first reservation wins), for callers that know only names."""
        held: dict[str, int] = {}
        for r in self.reservations:
            for node in r.nodes:
                held.setdefault(node, r.job_id)
        return held


def backfill_pass(jobs: Iterable[QueuedJob], views: Mapping[str, NodeView],
                  running: Sequence[Running] | Callable[[], Iterable[Running]],
                  limits: Mapping[int, float | None], now: float, depth: int = 1, mode: str = "easy",
                  placer: Placer | None = None, limit: int | None = None,
                  max_tested: int | None = None, explain: int = EXPLAINED_SHAPES,
                  carried: Sequence[Reservation] = (), open_names: Sequence[str] | None = None,
                  memo: tuple[frozenset, Mapping[tuple, Rejection]] | None = None) -> BackfillResult:
    """Place what may start now; reserve for the first `depth` blocked jobs (see the module's docstring).

    `views` maps node names to views (placement tries nodes in name order); `running` lists what holds
    resources now, or a function that lists it, called only when a reservation must be worked out (the
    common pass places everything and never needs it); `limits` maps a job to its time limit in seconds
    (absent or None: unlimited). `open_names`, when the caller keeps it, lists in name order the nodes that
    take work and are not full. `carried` and `memo` are the reservations and the memo an earlier pass made, still valid when nothing
    but new submissions changed since. With
    `max_tested` (Slurm's bf_max_job_test) the pass stops after trying that many jobs, and with `limit`
    after making that many plans; the rest keep the reason an earlier pass gave them. The first `explain` shapes that wait get every node's refusal.
    """
    placer = placer or _plain_placer
    names = _NameOrder(views)
    # The pass's own copy of the views, made when its first plan lands: a pass over a few new jobs in a
    # big cluster (most passes) copies nothing it does not change. The same for the open nodes' list.
    work: Mapping[str, NodeView] = views
    own: dict[str, NodeView] | None = None
    own_open: list[str] = []
    # The nodes that take work and have room, in name order; a node leaves the list when it fills up.
    opened: Sequence[str] = open_names if open_names is not None else [
        n for n in names.all if views[n].blocked is None and not views[n].is_full]
    ends: list[Running] | None = None  # every running end, sorted; built on first need
    planned: list[Running] = []
    plans: list[Plan] = []
    waiting: dict[int, Rejection] = {}
    reservations: list[Reservation] = list(carried)
    backfilled: set[int] = set()
    # Work only lands during a pass, never leaves: a shape that did not fit behind a fence never will.
    unfit: set[tuple] = set(memo[0]) if memo else set()
    explained: dict[tuple, Rejection] = dict(memo[1]) if memo else {}
    # Free CPU on open nodes: a bound to skip jobs that cannot fit, counted once a job has failed to (a
    # pass that places everything never pays for it).
    free_milli: int | None = None
    blocked_head = False
    tested = 0
    # The most idle cores and free memory on one open node: work only lands during a pass, so the first
    # figures stay an upper bound and a task larger than them need not be tried. Worked out (a look at
    # every open node) once a job has failed to fit: a pass over a few new jobs that all fit never pays.
    roomiest: tuple[int, int] | None = None
    for job in queue_order(jobs):
        if max_tested is not None and tested >= max_tested:
            break
        if job.held is not None:
            waiting[job.job_id] = Rejection(job.job_id, job.held, job.held_detail)
            continue
        if mode == "fifo" and blocked_head:
            break  # strict order: nothing behind a blocked job is looked at
        if limit is not None and len(plans) >= limit:
            break  # the next pass goes on from here; until then the rest keep the reasons they had
        tested += 1
        runtime = _seconds(limits.get(job.job_id))
        fence = _fence(reservations, now, now + runtime, job.job_id)
        key = (job.demand.shape, tuple(sorted(fence)))
        plan = None
        if key not in unfit and (free_milli is None or _total_milli(job.demand) <= free_milli):
            if roomiest is None and blocked_head:
                roomiest = _roomiest(work[n] for n in opened)
            if roomiest is None or _may_fit(job.demand, roomiest):
                plan = placer(job.demand, _OpenViews(work, opened), fence)
        if plan is not None:
            plans.append(plan)
            if reservations:
                backfilled.add(job.job_id)
            if own is None:
                work = own = dict(views)
                opened = own_open = list(opened)
            for grant in plan.grants:
                before = own[grant.node]
                after = own[grant.node] = before.with_grant(grant)
                if free_milli is not None:
                    free_milli -= _free_milli(before) - _free_milli(after)
                if after.is_full:
                    own_open.remove(grant.node)
                if ends is None:
                    planned.append(Running(now + runtime, grant))
                else:
                    _insert(ends, Running(now + runtime, grant))
            continue
        unfit.add(key)
        blocked_head = True
        if free_milli is None:
            free_milli = sum(_free_milli(work[n]) for n in opened)
        outcome = explained.get(key)
        if outcome is None:
            outcome = explained[key] = _explain(job.demand, work, names.all, fence,
                                                full=len(explained) < explain)
        waiting[job.job_id] = Rejection(job.job_id, outcome.reason, outcome.detail, outcome.nodes)
        if mode != "fifo" and len(reservations) < depth and outcome.reason in (PendingReason.RESOURCES,
                                                                                PendingReason.PRIORITY):
            if ends is None:
                ends = sorted([*(running() if callable(running) else running), *planned], key=lambda r: r.end)
            found_at = earliest_start(job.demand, runtime, work, ends, reservations, now, placer)
            if found_at is None:
                found_at = _hold_emptiest(job.demand, work, names.all, reservations, now, placer)
            if found_at is not None:
                reservations.append(found_at)
    return BackfillResult(tuple(plans), waiting, tuple(reservations), frozenset(backfilled),
                          (frozenset(unfit), explained))


def earliest_start(demand: JobDemand, runtime: float, views: Mapping[str, NodeView], ends: Sequence[Running],
                   reservations: Sequence[Reservation], now: float, placer: Placer | None = None
                   ) -> Reservation | None:
    """When and where the job could start at the earliest: release the work in `ends` (all of what holds
    `views`' resources) in the order of its ends until the job fits, on nodes no earlier reservation holds
    over the job's window; None if it never does.

    Releasing work only adds room, so whether the job fits grows with time: the moments work ends are
    probed at doubling strides (releasing as time goes), then bisected between the last miss and the
    first fit, each probe one placement. (Earlier reservations' fences can make a later moment the
    first that fits; the stride may then find a later one than the earliest: never an earlier one.)"""
    placer = placer or _plain_placer
    names = sorted(views)
    ends = [r for r in ends if math.isfinite(r.end)]
    moments = sorted({now, *(r.end for r in ends if r.end >= now)})
    need = _total_milli(demand)

    def release(future: dict[str, NodeView], done: int, free: int, moment: float) -> tuple[int, int]:
        while done < len(ends) and ends[done].end <= moment:
            grant = ends[done].grant
            view = future.get(grant.node)
            if view is not None:
                after = future[grant.node] = view.give_back(grant)
                free += _free_milli(after) - _free_milli(view)
            done += 1
        return done, free

    def fits(future: dict[str, NodeView], free: int, moment: float) -> Plan | None:
        if need > free:
            return None
        fence = _fence(reservations, moment, moment + runtime, demand.job_id)
        return placer(demand, [future[n] for n in names if future[n].blocked is None], fence)

    future, done, free = dict(views), 0, sum(_free_milli(v) for v in views.values())
    missed: tuple[int, dict[str, NodeView], int, int] | None = None  # the last moment that did not fit
    k, stride, hit = 0, 1, None
    while k < len(moments):
        done, free = release(future, done, free, moments[k])
        plan = fits(future, free, moments[k])
        if plan is not None:
            hit = (k, plan)
            break
        missed = (k, dict(future), done, free)
        k, stride = k + stride, stride * 2
        if k >= len(moments) and missed[0] < len(moments) - 1:
            k = len(moments) - 1
    if hit is None:
        return None
    k, plan = hit
    if missed is not None:
        low, high = missed[0] + 1, k
        while low < high:
            middle = (low + high) // 2
            trial = dict(missed[1])
            trial_done, trial_free = release(trial, missed[2], missed[3], moments[middle])
            found = fits(trial, trial_free, moments[middle])
            if found is not None:
                high, plan = middle, found
            else:
                low, missed = middle + 1, (middle, trial, trial_done, trial_free)
        k = high
    return Reservation(demand.job_id, moments[k], moments[k] + runtime, plan.nodes)


def _hold_emptiest(demand: JobDemand, work: Mapping[str, NodeView], names: Sequence[str],
                   reservations: Sequence[Reservation], now: float, placer: Placer) -> Reservation | None:
    """A reservation of unknown start for a job whose wait has no end in sight (work without time limits):
    the nodes it would take once emptied, the least loaded (likely first free) first."""
    fence = _fence(reservations, now, math.inf, demand.job_id)
    usable = sorted((work[n] for n in names if work[n].blocked is None),
                    key=lambda v: (v.cpus_used_milli, v.memory_used, v.name))
    plan = placer(demand, [v.emptied() for v in usable], fence)
    return Reservation(demand.job_id, now, math.inf, plan.nodes, known=False) if plan is not None else None


def _explain(demand: JobDemand, work: Mapping[str, NodeView], names: Sequence[str], fence: Mapping[str, int],
             full: bool) -> Rejection:
    """Why a job does not start now. In full (every node's refusal) for the first shapes of the queue, the
    ones users look at; further down, where a long queue would pay for it on every pass, only the job's
    reason, unless its constraints make that reason depend on which nodes match."""
    if not full and not demand.constraints and not demand.exclude:
        capacity = sum(len(work[n].cores) * 1000 for n in names if work[n].blocked is None)
        if _total_milli(demand) > capacity:
            return Rejection(demand.job_id, PendingReason.RESOURCES, "the job is larger than all nodes together")
        return Rejection(demand.job_id, PendingReason.RESOURCES, "waiting for running work to free resources")
    found = place(demand, [work[n] for n in names], fence)
    if isinstance(found, Plan):  # fits but for the fence: a reservation ahead holds it back
        holders = sorted(set(fence.values()))
        return Rejection(demand.job_id, PendingReason.PRIORITY,
                         f"nodes are reserved for job {', '.join(map(str, holders))}, ahead in the queue")
    return found


class _OpenViews(Sequence[NodeView]):
    """The open nodes' views, read as the placer asks for them: `pack` stops at the first nodes that hold
    the job, so a one-task job looks at one view, not at a list of every open node built for it."""

    def __init__(self, work: Mapping[str, NodeView], names: Sequence[str]) -> None:
        self._work, self._names = work, names

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._work[n] for n in self._names[index]]
        return self._work[self._names[index]]

    def __iter__(self):
        work = self._work
        return (work[n] for n in self._names)


class _NameOrder:
    """Every node's name in order, sorted only if a pass needs them all (most passes look at open ones)."""

    def __init__(self, views: Mapping[str, NodeView]) -> None:
        self._views = views
        self._names: list[str] | None = None

    @property
    def all(self) -> list[str]:
        if self._names is None:
            self._names = sorted(self._views)
        return self._names


def _roomiest(views: Iterable[NodeView]) -> tuple[int, int]:
    idle = memory = 0
    for view in views:
        idle = max(idle, view.idle_cores)
        memory = max(memory, view.memory_free)
    return idle, memory


def _may_fit(demand: JobDemand, roomiest: tuple[int, int]) -> bool:
    """False when not even one task (or one rank) fits on the roomiest node: no need to try placing."""
    one = demand.per_task
    if one.memory > roomiest[1]:
        return False
    return not (one.is_exclusive and one.core_count > roomiest[0])


def _fence(reservations: Sequence[Reservation], start: float, end: float, job_id: int) -> dict[str, int]:
    """Nodes a job running from `start` to `end` may not touch: those of reservations it would overlap."""
    fence: dict[str, int] = {}
    for r in reservations:
        if r.job_id != job_id and start < r.end and r.start < end:
            for node in r.nodes:
                fence.setdefault(node, r.job_id)
    return fence


def _plain_placer(demand: JobDemand, nodes: Sequence[NodeView], fence: Mapping[str, int]) -> Plan | None:
    return try_place(demand, nodes, fence)


def _seconds(limit: float | None) -> float:
    return math.inf if limit is None or limit <= 0 else float(limit)


def _free_milli(view: NodeView) -> int:
    if view.blocked is not None:
        return 0
    return len(view.core_load) * 1000 - view.cpus_used_milli


def _total_milli(demand: JobDemand) -> int:
    count = demand.ranks if demand.ranks is not None else demand.tasks
    return demand.per_task.cpus_milli * count


def _insert(ends: list[Running], item: Running) -> None:
    import bisect

    bisect.insort(ends, item, key=lambda r: r.end)
