"""The job spec as typed values: `JobSpec` and its parts, built only from a validated tree.

`build_spec` turns a `Node` tree (from a YAML file, from `--set` options, or from a stored dict) into a
`JobSpec`, checking each field against the table in `jobs.fields` and then the rules that tie fields
together (ranks per node, MPI against tasks, volumes that collide). Every problem is collected with its
position and raised at once as `SpecError`. `to_dict` gives the plain form the scheduler stores and agents
receive; `from_dict` reads it back through the same checks. Text and files are `jobs.loader`'s business.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jobs.document import Node
from jobs.fields import DEFAULT_MEMORY, JOB
from jobs.kinds import INVALID
from jobs.problems import Mark, Problems
from jobs.units import ArrayRange, format_array, format_size, parse_array, parse_size


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Resources:
    """What one task (one MPI rank) needs: CPUs (fractional), memory in bytes, GPUs."""

    cpus: float = 1.0
    memory: int = DEFAULT_MEMORY
    gpus: int = 0

    def times(self, count: int) -> Resources:
        """What `count` tasks or ranks need together (one node's share of an MPI job)."""
        return Resources(round(self.cpus * count, 3), self.memory * count, self.gpus * count)


@dataclass(frozen=True, slots=True)
class Mpi:
    """The MPI section: ranks in all, ranks on each node (None: fill nodes, decided at placement)."""

    ranks: int
    ranks_per_node: int | None = None
    implementation: str = "openmpi"


@dataclass(frozen=True, slots=True)
class Volume:
    """A bind mount; `source` is an absolute host path (relative ones resolved against the job file)."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the job may run: node count, labels to match, nodes to avoid, pack or spread."""

    nodes: int | None = None
    constraints: Mapping[str, str] = field(default_factory=_empty)
    exclude: tuple[str, ...] = ()
    policy: str = "pack"


@dataclass(frozen=True, slots=True)
class Dependency:
    """Run only after these jobs end: afterok (succeeded), afterany, afternotok (failed)."""

    kind: str
    job_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job: exactly the fields of the job YAML, with their defaults filled in."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=_empty)
    resources: Resources = field(default_factory=Resources)
    mpi: Mpi | None = None
    tasks: int = 1
    network: str = "host"
    volumes: tuple[Volume, ...] = ()
    placement: Placement = field(default_factory=Placement)
    time_limit: int | None = None
    priority: int = 0
    requeue: bool = True
    depends_on: tuple[Dependency, ...] = ()
    array: ArrayRange | None = None

    @property
    def is_mpi(self) -> bool:
        return self.mpi is not None

    @property
    def container_per_node(self) -> bool:
        """MPI jobs get one container a node holding all that node's ranks (Open MPI's shared memory needs
        them in one PID namespace); other jobs get one container a task."""
        return self.mpi is not None

    @property
    def units(self) -> int:
        """How many things each need `resources`: MPI ranks, or tasks (containers) otherwise."""
        return self.mpi.ranks if self.mpi else self.tasks

    @property
    def fixed_node_count(self) -> int | None:
        """The node count the spec decides by itself, or None when placement chooses it."""
        if self.placement.nodes is not None:
            return self.placement.nodes
        if self.mpi and self.mpi.ranks_per_node:
            return math.ceil(self.mpi.ranks / self.mpi.ranks_per_node)
        return None

    def split_ranks(self, capacities: Sequence[int]) -> tuple[int, ...]:
        """How many units go on each of the chosen nodes, given how many each can hold, filling nodes in
        order and never exceeding `ranks_per_node`. Raises ValueError when they do not all fit."""
        cap = self.mpi.ranks_per_node if self.mpi and self.mpi.ranks_per_node else None
        left, layout = self.units, []
        for capacity in capacities:
            count = min(left, capacity, cap) if cap else min(left, capacity)
            layout.append(count)
            left -= count
        if left:
            raise ValueError(f"{self.units} units do not fit on nodes holding {list(capacities)}")
        return tuple(layout)

    def to_dict(self) -> dict[str, Any]:
        """The plain form (str, int, float, bool, None, lists, dicts) for msgpack, SQLite and YAML;
        `from_dict` reads it back to an equal spec."""
        return {
            "name": self.name, "image": self.image, "command": list(self.command), "workdir": self.workdir,
            "env": dict(self.env),
            "resources": {"cpus": self.resources.cpus, "memory": self.resources.memory,
                          "gpus": self.resources.gpus},
            "mpi": None if self.mpi is None else {"ranks": self.mpi.ranks,
                                                  "ranks_per_node": self.mpi.ranks_per_node,
                                                  "implementation": self.mpi.implementation},
            "tasks": self.tasks, "network": self.network,
            "volumes": [{"source": v.source, "target": v.target, "read_only": v.read_only}
                        for v in self.volumes],
            "placement": {"nodes": self.placement.nodes, "constraints": dict(self.placement.constraints),
                          "exclude": list(self.placement.exclude), "policy": self.placement.policy},
            # Seconds with their unit: a bare number in a job file means minutes, as in Slurm.
            "time_limit": None if self.time_limit is None else f"{self.time_limit}s",
            "priority": self.priority, "requeue": self.requeue,
            "depends_on": [{d.kind: list(d.job_ids)} for d in self.depends_on],
            "array": None if self.array is None else format_array(self.array),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "stored spec") -> JobSpec:
        """A spec from its plain form, checked again; raises SpecError (relative volumes are refused)."""
        problems = Problems()
        tree = node_from_value(data, Mark(origin), problems)
        return build_spec(tree, problems, base_dir=None)


# Scalars as msgpack and JSON give them: told apart by their exact type, so the tree of a submitted spec
# is built without an abstract-class check for each of its values (those were half of checking a spec).
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None), bytes})


def node_from_value(value: Any, mark: Mark, problems: Problems) -> Node:
    """A tree of Nodes for plain Python data, every node marked with `mark`."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return Node(value, mark)
    if kind is dict or isinstance(value, Mapping):
        children: dict[str, Node] = {}
        for key, child in value.items():
            if type(key) is not str and not isinstance(key, str):
                problems.add(mark, "", f"key {key!r} is not text")
                continue
            children[key] = node_from_value(child, mark, problems)
        return Node(children, mark, keys=dict.fromkeys(children, mark))
    if kind is list or isinstance(value, list | tuple):
        return Node([node_from_value(item, mark, problems) for item in value], mark)
    return Node(value, mark)


def build_spec(tree: Node, problems: Problems, base_dir: str | None) -> JobSpec:
    """The JobSpec of a tree, or SpecError with every problem in it (and any already in `problems`)."""
    values = JOB.check(tree, "", problems)
    if isinstance(values, dict):
        _check_together(values, tree, problems, base_dir)
    problems.raise_if_any()
    return _assemble(values)


def _at(tree: Node, path: str) -> Node:
    """The node at a dotted path, or the nearest one above it (for a problem's position)."""
    node = tree
    for part in path.split("."):
        if not node.is_mapping or part not in node.value:
            return node
        node = node.value[part]
    return node


def _key_mark(tree: Node, path: str) -> Mark:
    parent, _, last = path.rpartition(".")
    node = _at(tree, parent) if parent else tree
    return node.keys.get(last, node.mark) if node.is_mapping else node.mark


def _check_together(values: dict[str, Any], tree: Node, problems: Problems, base_dir: str | None) -> None:
    """The rules that tie fields together; each looks only at values that passed their own checks."""
    mpi = values.get("mpi")
    mpi = mpi if isinstance(mpi, dict) else {}
    ranks, per_node = mpi.get("ranks"), mpi.get("ranks_per_node")
    ranks_ok = isinstance(ranks, int)
    placement = values.get("placement") if isinstance(values.get("placement"), dict) else {}
    nodes = placement.get("nodes")
    tasks = values.get("tasks", 1)

    if mpi and isinstance(tasks, int) and tasks > 1:
        problems.add(_key_mark(tree, "tasks"), "tasks", "an MPI job runs one process per rank; set mpi.ranks "
                                                        "instead and remove 'tasks'")
    if ranks_ok and isinstance(per_node, int) and per_node > ranks:
        problems.add(_at(tree, "mpi.ranks_per_node").mark, "mpi.ranks_per_node",
                     f"{per_node} ranks per node is more than the {ranks} ranks in all; "
                     f"lower it to at most {ranks}")
    elif isinstance(nodes, int) and ranks_ok and isinstance(per_node, int) \
            and nodes != math.ceil(ranks / per_node):
        need = math.ceil(ranks / per_node)
        problems.add(_at(tree, "placement.nodes").mark, "placement.nodes",
                     f"{ranks} ranks at {per_node} per node fill {need} node{'s' * (need != 1)}, not {nodes}; "
                     f"set it to {need} or remove it")
    elif isinstance(nodes, int) and ranks_ok and nodes > ranks:
        problems.add(_at(tree, "placement.nodes").mark, "placement.nodes",
                     f"{nodes} nodes is more than the {ranks} MPI ranks; use at most {ranks}")
    elif isinstance(nodes, int) and not mpi and isinstance(tasks, int) and nodes > tasks:
        problems.add(_at(tree, "placement.nodes").mark, "placement.nodes",
                     f"{nodes} nodes is more than the {tasks} task{'s' * (tasks != 1)}; "
                     f"use at most {tasks} or raise 'tasks'")
    spans_nodes = (isinstance(nodes, int) and nodes > 1) or (
        ranks_ok and isinstance(per_node, int) and per_node < ranks)
    if mpi and values.get("network") == "none" and spans_nodes:
        problems.add(_at(tree, "network").mark, "network", "an MPI job across nodes needs a network; use "
                                                          "host (the default) or bridge")

    volumes = values.get("volumes")
    if isinstance(volumes, tuple):
        values["volumes"] = _resolve_volumes(volumes, _at(tree, "volumes"), problems, base_dir)


def _resolve_volumes(volumes: tuple[Any, ...], node: Node, problems: Problems,
                     base_dir: str | None) -> tuple[Volume, ...]:
    items = node.value if node.is_sequence else [node]
    resolved: list[Volume] = []
    seen: dict[str, int] = {}
    for index, (source, target, read_only) in enumerate(volumes):
        where, mark = f"volumes[{index}]", items[index].mark if index < len(items) else node.mark
        if not source.startswith("/"):
            if base_dir is None:
                problems.add(mark, where, f"source {source!r} is relative but there is no job file to start "
                                          "from; write an absolute path")
                continue
            source = os.path.normpath(os.path.join(base_dir, source))
        target = os.path.normpath(target)
        if target in seen:
            problems.add(mark, where, f"target {target} is already used by volumes[{seen[target]}]; "
                                      "mount each container path once")
            continue
        seen[target] = index
        resolved.append(Volume(os.path.normpath(source), target, read_only))
    return tuple(resolved)


def _assemble(values: dict[str, Any]) -> JobSpec:
    """The JobSpec of checked values; a field not given keeps the dataclass default."""
    given = {key: value for key, value in values.items() if value is not INVALID}
    for key in ("resources", "placement"):
        given.setdefault(key, {})
    resources = Resources(**given.pop("resources"))
    placement_values = given.pop("placement")
    if "constraints" in placement_values:
        placement_values["constraints"] = MappingProxyType(dict(placement_values["constraints"]))
    placement = Placement(**placement_values)
    mpi = Mpi(**given.pop("mpi")) if "mpi" in given else None
    if "env" in given:
        given["env"] = MappingProxyType(dict(given["env"]))
    if "depends_on" in given:
        given["depends_on"] = tuple(Dependency(kind, ids) for kind, ids in given["depends_on"])
    if "array" in given and not isinstance(given["array"], ArrayRange):
        given["array"] = parse_array(given["array"])
    return JobSpec(resources=resources, placement=placement, mpi=mpi, **given)


def spec_to_yaml(spec: JobSpec) -> str:
    """The spec as a person would write it, every default shown: sizes and durations in units, and
    fields without a value left out. It validates back to the same spec."""
    import yaml

    data = spec.to_dict()
    memory = data["resources"]["memory"]
    if parse_size(format_size(memory)) == memory:
        data["resources"]["memory"] = format_size(memory)
    if spec.time_limit is not None:
        data["time_limit"] = _duration_text(spec.time_limit)
    data = _without_none(data)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value
