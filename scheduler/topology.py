"""The network's shape: switches and the nodes under them, read from a Slurm `topology.conf`-style file.

    SwitchName=s0 Nodes=n[1-4]
    SwitchName=s1 Nodes=n[5-8]
    SwitchName=top Switches=s[0-1]

It becomes a networkx graph (switches and nodes as vertices, links as edges); this is the only module that
imports networkx. Placement asks it two things: which groups of nodes share a switch (so `pack` can try
the smallest group that holds a job first: one leaf switch when it fits), and in which order to visit
nodes so consecutive ones sit under different leaves (`spread`). The hop count of a placement is the most
switches a message between two of its nodes crosses: 1 under one leaf switch, 3 through a spine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest

import networkx as nx

from jobs.errors import RadeError


class TopologyError(RadeError):
    """The topology file cannot be read or does not describe a tree of switches."""


_RANGE = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<body>[^\[\]]+)\](?P<suffix>[^\[\]]*)$")


def expand_hostlist(text: str) -> list[str]:
    """Slurm's host list syntax: `n[1-4,7]`, `sim[001-016]`, `a,b`, names with one bracket each."""
    names: list[str] = []
    for part in re.findall(r"[^,\[]*(?:\[[^\]]*\])?[^,]*", text):
        part = part.strip()
        if not part:
            continue
        match = _RANGE.match(part)
        if match is None:
            if "[" in part or "]" in part:
                raise TopologyError(f"'{part}' is not a host list", "write e.g. n[1-4,7]")
            names.append(part)
            continue
        for item in match.group("body").split(","):
            low, _, high = item.partition("-")
            if not low.strip().isdigit() or (high and not high.strip().isdigit()):
                raise TopologyError(f"'{part}': '{item}' is not a number or a range", "write e.g. n[1-4,7]")
            width = len(low.strip())
            for number in range(int(low), int(high or low) + 1):
                names.append(f"{match.group('prefix')}{number:0{width}d}{match.group('suffix')}")
    return names


@dataclass(frozen=True)
class Topology:
    """A tree of switches over nodes. `switch_nodes[s]` is every node below switch `s`, leaves included."""

    graph: nx.Graph
    leaf_of: Mapping[str, str]
    switch_nodes: Mapping[str, frozenset[str]]

    @cached_property
    def _switch_distance(self) -> dict[str, dict[str, int]]:
        switches = self.graph.subgraph(self.switch_nodes)
        return {s: dict(d) for s, d in nx.all_pairs_shortest_path_length(switches)}

    def hops(self, a: str, b: str) -> int | None:
        """Switches a message from node a to node b crosses (0 on one node), None when one is not in the tree."""
        if a == b:
            return 0
        leaf_a, leaf_b = self.leaf_of.get(a), self.leaf_of.get(b)
        if leaf_a is None or leaf_b is None:
            return None
        distance = self._switch_distance.get(leaf_a, {}).get(leaf_b)
        return None if distance is None else distance + 1

    def max_hops(self, nodes: Iterable[str]) -> int | None:
        """The largest hop count between any two of the nodes (0 for one node), None if one is unknown."""
        names = list(dict.fromkeys(nodes))
        if any(n not in self.leaf_of for n in names):
            return None
        leaves = list(dict.fromkeys(self.leaf_of[n] for n in names))
        if len(names) <= 1:
            return 0
        if len(leaves) == 1:
            return 1
        return max(self.hops_between_leaves(a, b) for i, a in enumerate(leaves) for b in leaves[i + 1:])

    def hops_between_leaves(self, a: str, b: str) -> int:
        return self._switch_distance[a][b] + 1

    @cached_property
    def groups(self) -> tuple[tuple[str, frozenset[str]], ...]:
        """Every switch with the nodes below it, smallest reach first (leaves before spines): the order in
        which `pack` tries them, so a job lands in the tightest group that holds it."""
        return tuple(sorted(self.switch_nodes.items(), key=lambda item: (len(item[1]), item[0])))

    def pack_candidates(self, names: Sequence[str]) -> list[list[str]]:
        """Subsets of `names` (order kept) under one switch each, tightest first, then all of them."""
        out = []
        for _, below in self.groups:
            subset = [n for n in names if n in below]
            if subset and len(subset) < len(names):
                out.append(subset)
        out.append(list(names))
        return out

    def spread_order(self, names: Sequence[str]) -> list[str]:
        """`names` dealt round-robin across leaf switches, so neighbours in the list sit apart."""
        by_leaf: dict[str, list[str]] = {}
        unknown = []
        for name in names:
            leaf = self.leaf_of.get(name)
            if leaf is None:
                unknown.append(name)
            else:
                by_leaf.setdefault(leaf, []).append(name)
        dealt = [n for row in zip_longest(*by_leaf.values()) for n in row if n is not None]
        return dealt + unknown


def parse_topology(text: str, origin: str = "topology") -> Topology:
    """A `topology.conf` text as a `Topology`; errors name the line."""
    graph = nx.Graph()
    children: dict[str, list[str]] = {}
    leaf_of: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = {}
        for item in line.split():
            key, sep, value = item.partition("=")
            if not sep:
                raise TopologyError(f"{origin}:{number}: '{item}' is not KEY=VALUE",
                                    "write e.g. SwitchName=s0 Nodes=n[1-4]")
            fields[key.lower()] = value
        switch = fields.get("switchname")
        if not switch:
            raise TopologyError(f"{origin}:{number}: a line without SwitchName=",
                                "every line names one switch: SwitchName=s0 Nodes=n[1-4]")
        if switch in children:
            raise TopologyError(f"{origin}:{number}: switch {switch} is described twice")
        graph.add_node(switch, kind="switch")
        children[switch] = []
        try:
            nodes, switches = expand_hostlist(fields.get("nodes", "")), expand_hostlist(fields.get("switches", ""))
        except TopologyError as err:
            raise TopologyError(f"{origin}:{number}: {err.message}", err.hint) from None
        for node in nodes:
            if node in leaf_of:
                raise TopologyError(f"{origin}:{number}: node {node} is already under switch {leaf_of[node]}",
                                    "a node hangs from one leaf switch")
            leaf_of[node] = switch
            graph.add_node(node, kind="node")
            graph.add_edge(switch, node)
        children[switch].extend(switches)
    for switch, below in children.items():
        for child in below:
            if child not in children:
                raise TopologyError(f"{origin}: switch {switch} links to {child}, which no line describes",
                                    f"add a line 'SwitchName={child} Nodes=...'")
            graph.add_edge(switch, child)
    if not children:
        raise TopologyError(f"{origin}: no switch described", "write e.g. SwitchName=s0 Nodes=n[1-4]")
    switch_graph = graph.subgraph(children)
    if not nx.is_forest(switch_graph):
        raise TopologyError(f"{origin}: the switches form a loop", "describe a tree: each switch has one parent")
    reach: dict[str, frozenset[str]] = {}

    def below(switch: str, seen: frozenset[str]) -> frozenset[str]:
        if switch not in reach:
            own = {n for n, leaf in leaf_of.items() if leaf == switch}
            for child in children[switch]:
                if child not in seen:
                    own |= below(child, seen | {switch})
            reach[switch] = frozenset(own)
        return reach[switch]

    for switch in children:
        below(switch, frozenset())
    return Topology(graph, leaf_of, reach)


def load_topology(path: str) -> Topology:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise TopologyError(f"{path}: cannot be read: {err.strerror or err}") from None
    return parse_topology(text, path)


def topology_placer(topology: Topology):
    """A placer (see `scheduler.backfill.Placer`) that knows the switches: `pack` tries each switch's nodes
    alone, tightest switch first, before all nodes; `spread` deals the nodes across leaf switches."""
    from scheduler.placement import try_place

    def placer(demand, nodes, fence):
        views = list(nodes)
        if demand.policy == "spread":
            # Placement's own spread orders nodes by how empty they are, then by name; offering it first only
            # as many nodes as the job may use, dealt across leaves, makes it cross switches.
            order = {name: i for i, name in enumerate(topology.spread_order([v.name for v in views]))}
            dealt = sorted(views, key=lambda v: order[v.name])
            one = demand.per_task
            width = demand.nodes or (demand.ranks if demand.ranks is not None else demand.tasks)
            roomy = [v for v in dealt if v.shortfall(one) is None and fence.get(v.name, demand.job_id) == demand.job_id]
            plan = try_place(demand, roomy[:width], fence)
            return plan if plan is not None else try_place(demand, dealt, fence)
        by_name = {v.name: v for v in views}
        for subset in topology.pack_candidates(list(by_name)):
            plan = try_place(demand, [by_name[n] for n in subset], fence)
            if plan is not None:
                return plan
        return None

    return placer
