"""What a node offers and what a task asks for, as immutable values placement can reason about.

CPUs are counted in thousandths (millicpus) so that fractional requests add up exactly. A whole-CPU task
gets cores of its own (load 1000 on each, no other task may touch them); a fractional task shares: it gets
`ceil(cpus)` cores that still have room, and adds its share to each. A node's view is replaced, never
changed, when work lands on it or leaves it, so a snapshot handed to placement stays true while it reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from jobs.spec import JobSpec

V = TypeVar("V")

MILLI = 1000
GIB = 1024**3

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def evolve(value: V, **changes: object) -> V:
    """A copy of a frozen dataclass value with some fields changed: `dataclasses.replace` without its
    per-call introspection and __init__/__post_init__, which cost twice as much on the scheduler's hot
    paths. Only for values whose __post_init__ derives nothing from the changed fields."""
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    new = object.__new__(cls)
    for name in names:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(value, name))
    return new


@dataclass(frozen=True, slots=True)
class TaskDemand:
    """One task's (container's) needs; for an MPI job, all the ranks it holds on its node."""

    cpus_milli: int
    memory: int
    gpus: int = 0

    @property
    def is_exclusive(self) -> bool:
        """Whole CPUs get cores of their own; fractions share cores."""
        return self.cpus_milli % MILLI == 0

    @property
    def core_count(self) -> int:
        return math.ceil(self.cpus_milli / MILLI)

    def times(self, ranks: int) -> TaskDemand:
        """The demand of `ranks` ranks together in one container."""
        return TaskDemand(self.cpus_milli * ranks, self.memory * ranks, self.gpus * ranks)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one task got on one node: the exact cores (its cpuset), memory and GPU indices."""

    node: str
    cores: tuple[int, ...]
    cpus_milli: int
    memory: int
    gpus: tuple[int, ...] = ()
    ranks: int = 1


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as placement sees it: capacity, what is in use, labels, and whether it takes new work.

    `core_load` holds the millicpus in use on each core of `cores`, index for index. `blocked` is None when
    the node accepts work, else why not (`down`, `draining`, ...). `numa` groups the core ids by NUMA
    node: a task's exclusive cores are taken from one NUMA node when one can hold them all.
    """

    name: str
    cores: tuple[int, ...]
    memory: int
    gpus: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    core_load: tuple[int, ...] = ()
    memory_used: int = 0
    gpus_used: frozenset[int] = frozenset()
    blocked: str | None = None
    tasks: int = 0
    numa: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.core_load:
            object.__setattr__(self, "core_load", (0,) * len(self.cores))

    @property
    def idle_cores(self) -> int:
        return self.core_load.count(0)

    @property
    def cpus_used_milli(self) -> int:
        return sum(self.core_load)

    @property
    def memory_free(self) -> int:
        return self.memory - self.memory_used

    @property
    def gpus_free(self) -> tuple[int, ...]:
        return tuple(g for g in self.gpus if g not in self.gpus_used)

    def shortfall(self, demand: TaskDemand) -> str | None:
        """Why one task of `demand` does not fit on this node now, or None when it does."""
        if demand.memory > self.memory_free:
            return f"memory: {self.memory_free} bytes free < {demand.memory}"
        if demand.gpus > len(self.gpus) - len(self.gpus_used):
            return f"gpus: {len(self.gpus) - len(self.gpus_used)} free < {demand.gpus}"
        if demand.is_exclusive:
            if demand.core_count > self.idle_cores:
                return f"cpus: {self.idle_cores} idle cores < {demand.core_count}"
            return None
        share = _share_per_core(demand)
        room = sum(1 for load in self.core_load if load + share <= MILLI)
        if demand.core_count > room:
            return f"cpus: {room} cores with {share / MILLI:g} CPU free < {demand.core_count}"
        return None

    def take(self, demand: TaskDemand) -> tuple[NodeView, Grant]:
        """This node with one task of `demand` added, and what the task got. The caller checked the fit."""
        loads = list(self.core_load)
        chosen: list[int] = []
        if demand.is_exclusive:
            chosen = self._idle_cores_for(loads, demand.core_count)
            for i in chosen:
                loads[i] = MILLI
        else:
            # Fill the busiest shared cores first, so idle cores stay whole for exclusive tasks.
            share = _share_per_core(demand)
            candidates = sorted((i for i, load in enumerate(loads) if 0 < load < MILLI and load + share <= MILLI),
                                key=lambda i: -loads[i])
            candidates += [i for i, load in enumerate(loads) if load == 0]
            chosen = sorted(candidates[: demand.core_count])
            for i in chosen:
                loads[i] += share
        if len(chosen) < demand.core_count:
            raise ValueError(f"node {self.name}: task does not fit ({self.shortfall(demand)})")
        gpus = self.gpus_free[: demand.gpus]
        grant = Grant(self.name, tuple(self.cores[i] for i in chosen), demand.cpus_milli, demand.memory, gpus)
        view = evolve(self, core_load=tuple(loads), memory_used=self.memory_used + demand.memory,
                       gpus_used=self.gpus_used | frozenset(gpus), tasks=self.tasks + 1)
        return view, grant

    def _idle_cores_for(self, loads: list[int], count: int) -> list[int]:
        """Indices of `count` idle cores: all in the NUMA node with the fewest idle cores that holds them
        (memory stays local, big NUMA holes stay whole), else from the emptiest NUMA nodes first."""
        if not self.numa:
            chosen = []
            for i, load in enumerate(loads):
                if load == 0:
                    chosen.append(i)
                    if len(chosen) == count:
                        break
            return chosen
        groups = []
        for group in self.numa:
            indices = [self._index(core) for core in group]
            groups.append([i for i in indices if i is not None and loads[i] == 0])
        holding = [g for g in groups if len(g) >= count]
        if holding:
            return min(holding, key=len)[:count]
        chosen: list[int] = []
        for group in sorted(groups, key=len, reverse=True):
            chosen.extend(group[: count - len(chosen)])
        grouped = {i for g in groups for i in g}
        chosen.extend(i for i, load in enumerate(loads) if load == 0 and i not in grouped)
        return chosen[:count]

    def with_grant(self, grant: Grant) -> NodeView:
        """This node with a granted task added on exactly the grant's cores (a plan being committed)."""
        loads = list(self.core_load)
        share = _grant_share(grant)
        for core in grant.cores:
            i = self._index(core)
            if i is None:
                raise ValueError(f"node {self.name} has no core {core}")
            loads[i] += share
        return evolve(self, core_load=tuple(loads), memory_used=self.memory_used + grant.memory,
                       gpus_used=self.gpus_used | frozenset(grant.gpus), tasks=self.tasks + 1)

    def admits(self, grant: Grant) -> str | None:
        """Why a grant made on an older snapshot no longer fits this node, or None when it still does."""
        if self.blocked is not None:
            return self.blocked
        if grant.memory > self.memory_free:
            return "memory taken meanwhile"
        if set(grant.gpus) & self.gpus_used or not set(grant.gpus) <= set(self.gpus):
            return "gpus taken meanwhile"
        share = _grant_share(grant)
        for core in grant.cores:
            i = self._index(core)
            if i is None or self.core_load[i] + share > MILLI:
                return f"core {core} taken meanwhile"
        return None

    @property
    def is_full(self) -> bool:
        """No CPU left at all: no task of any size can land here."""
        return not self.core_load or min(self.core_load) >= MILLI

    def _index(self, core: int) -> int | None:
        """Where a core id sits in `cores` (usually at its own number, so that is tried first)."""
        cores = self.cores
        if 0 <= core < len(cores) and cores[core] == core:
            return core
        try:
            return cores.index(core)
        except ValueError:
            return None

    def give_back(self, grant: Grant) -> NodeView:
        """This node with a finished task's grant released."""
        loads = list(self.core_load)
        share = _grant_share(grant)
        for core in grant.cores:
            i = self._index(core)
            if i is not None:
                loads[i] = max(0, loads[i] - share)
        return evolve(self, core_load=tuple(loads), memory_used=max(0, self.memory_used - grant.memory),
                       gpus_used=self.gpus_used - frozenset(grant.gpus), tasks=max(0, self.tasks - 1))

    def emptied(self) -> NodeView:
        """The node's whole capacity, as if nothing ran on it (for reservations)."""
        return evolve(self, core_load=(0,) * len(self.cores), memory_used=0, gpus_used=frozenset(), tasks=0)


def _grant_share(grant: Grant) -> int:
    if not grant.cores:
        return 0
    return -(-grant.cpus_milli // len(grant.cores))


def _share_per_core(demand: TaskDemand) -> int:
    """The millicpus a fractional task adds to each of its cores (rounded up, so cores never overfill)."""
    return -(-demand.cpus_milli // demand.core_count)


@dataclass(frozen=True, slots=True)
class JobDemand:
    """What placement needs to know of a job: its tasks, where they may go, and how to spread them.

    For an MPI job `ranks` is set and each task is one node's share of the ranks: `ranks_per_node` fixed,
    or None to fill nodes. `per_task` is per task for other jobs, per rank for MPI jobs.
    """

    job_id: int
    per_task: TaskDemand
    tasks: int = 1
    ranks: int | None = None
    ranks_per_node: int | None = None
    nodes: int | None = None
    constraints: Mapping[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()
    policy: str = "pack"

    @property
    def shape(self) -> tuple:
        """Jobs with the same shape fit or fail alike: a failed shape need not be tried again in one pass."""
        return (self.per_task, self.tasks, self.ranks, self.ranks_per_node, self.nodes,
                tuple(sorted(self.constraints.items())), self.exclude, self.policy)


def demand_of(job_id: int, spec: JobSpec) -> JobDemand:
    """The placement demand of a checked spec: what `demand_from_spec` gives for its plain form, without
    parsing the units again (a submission has just checked them)."""
    res, placement, mpi = spec.resources, spec.placement, spec.mpi
    return JobDemand(
        job_id=job_id,
        per_task=TaskDemand(round(res.cpus * MILLI), res.memory, res.gpus),
        tasks=spec.tasks,
        ranks=mpi.ranks if mpi else None,
        ranks_per_node=mpi.ranks_per_node if mpi and mpi.ranks_per_node else None,
        nodes=placement.nodes or None,
        constraints=dict(placement.constraints),
        exclude=frozenset(placement.exclude),
        policy=placement.policy,
    )


def demand_from_spec(job_id: int, spec: Mapping) -> JobDemand:
    """The placement demand of a job spec given as plain data (a `JobSpec.to_dict()`)."""
    from jobs.units import parse_cpus, parse_size

    res = spec.get("resources") or {}
    cpus = parse_cpus(res.get("cpus", 1))
    per = TaskDemand(round(cpus * MILLI), parse_size(res.get("memory", 0) or 0), int(res.get("gpus", 0) or 0))
    placement = spec.get("placement") or {}
    mpi = spec.get("mpi") or None
    nodes = placement.get("nodes")
    return JobDemand(
        job_id=job_id,
        per_task=per,
        tasks=int(spec.get("tasks", 1) or 1),
        ranks=int(mpi["ranks"]) if mpi else None,
        ranks_per_node=int(mpi["ranks_per_node"]) if mpi and mpi.get("ranks_per_node") else None,
        nodes=int(nodes) if nodes else None,
        constraints={str(k): str(v) for k, v in (placement.get("constraints") or {}).items()},
        exclude=frozenset(str(n) for n in placement.get("exclude") or ()),
        policy=str(placement.get("policy") or "pack"),
    )
