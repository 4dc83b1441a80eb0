"""Topology: a topology.conf tree read into a graph; pack keeps a job under one leaf switch, spread apart."""

from __future__ import annotations

import pytest

from scheduler.placement import try_place
from scheduler.resources import GIB, TaskDemand
from scheduler.topology import TopologyError, expand_hostlist, parse_topology, topology_placer

from .conftest import node, queued

TWO_LEAVES = """
# two leaf switches under one spine
SwitchName=s0 Nodes=n[1-3]
SwitchName=s1 Nodes=n[4-5]
SwitchName=top Switches=s[0-1]
"""


def test_host_lists_expand_ranges_lists_and_zero_padding():
    assert expand_hostlist("n[1-3,7]") == ["n1", "n2", "n3", "n7"]
    assert expand_hostlist("sim[008-010],head") == ["sim008", "sim009", "sim010", "head"]


def test_hop_counts_through_the_tree():
    topo = parse_topology(TWO_LEAVES)
    assert topo.hops("n1", "n1") == 0
    assert topo.hops("n1", "n2") == 1
    assert topo.hops("n1", "n4") == 3
    assert topo.max_hops(["n1", "n2", "n3"]) == 1
    assert topo.max_hops(["n1", "n5"]) == 3
    assert topo.max_hops(["n1", "elsewhere"]) is None


def test_pack_job_of_two_nodes_lands_under_one_leaf_switch():
    topo = parse_topology(TWO_LEAVES)
    views = [node(f"n{i}") for i in range(1, 6)]
    # n1 and n2 are full: name order alone would take n3 (under s0) and n4 (under s1).
    for i in (0, 1):
        views[i] = views[i].take(TaskDemand(4000, GIB))[0]
    demand = queued(1, cpus=4, tasks=2).demand
    plain = try_place(demand, views)
    assert plain is not None and topo.max_hops(plain.nodes) == 3
    plan = topology_placer(topo)(demand, views, {})
    assert plan is not None and set(plan.nodes) == {"n4", "n5"}
    assert topo.max_hops(plan.nodes) == 1


def test_spread_job_crosses_leaf_switches():
    topo = parse_topology(TWO_LEAVES)
    views = [node(f"n{i}") for i in range(1, 6)]
    plan = topology_placer(topo)(queued(1, cpus=1, tasks=2, policy="spread").demand, views, {})
    assert plan is not None and topo.max_hops(plan.nodes) == 3


@pytest.mark.parametrize("text, words", [
    ("SwitchName=s0 Nodes=n[1-2]\nSwitchName=s1 Nodes=n2", "already under switch s0"),
    ("SwitchName=top Switches=s0", "which no line describes"),
    ("Nodes=n1", "without SwitchName"),
    ("SwitchName=s0 Nodes=n[1-", "not a host list"),
    ("SwitchName=a Switches=b\nSwitchName=b Switches=c\nSwitchName=c Switches=a", "loop"),
])
def test_bad_topology_files_are_refused_with_the_line(text, words):
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, "topology.conf")
    assert words in caught.value.message and caught.value.message.startswith("topology.conf")
