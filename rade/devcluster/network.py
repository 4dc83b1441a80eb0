"""The dev cluster's network: its slot on this machine, its bridge, and a test host per node.

Several dev clusters may be up on one machine (tests, benchmarks, a developer's own), each on a slot K:
bridge `rade-clK` at 198.18.K.1/24 (the benchmarking range, no route out), test hosts `rade-nodeI` (slot
0) or `rade-K-nodeI` at 198.18.K.(10+I), each its own network namespace with hostname `nodeI`. A slot is
claimed by making its bridge while /run/rade-devcluster.lock is held and is recorded before the lock is
released, so two `up`s never share a bridge and `down` removes only its own. The namespaces and links
themselves are made by `engine.network.testhost`; this module decides their names and addresses and
enters a test host for a process about to become one of its own (`python -m rade.devcluster enter`).
"""

from __future__ import annotations

import os
import sys
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from rade.devcluster.state import ClusterError, ClusterState, NodeEntry, save_state

if TYPE_CHECKING:
    from engine.network.testhost import BridgeSpec, TestHost

MAX_SLOTS = 64
SLOTS_LOCK = "/run/rade-devcluster.lock"


def bridge_name(slot: int) -> str:
    return f"rade-cl{slot}"


def gateway(slot: int) -> IPv4Interface:
    """Slot 0 is 198.18.0.1/24, slot K 198.18.K.1/24."""
    return IPv4Interface(f"198.18.{slot}.1/24")


def netns_name(slot: int, node: str) -> str:
    """Slot 0's test hosts are rade-node1..N; another slot's rade-K-node1..N (hostnames are node1..N in all)."""
    return f"rade-{node}" if slot == 0 else f"rade-{slot}-{node}"


def claim_slot(state: ClusterState) -> BridgeSpec:
    """Take the first slot whose bridge does not exist yet: make the bridge and save it in `state`."""
    from engine.filelock import file_lock
    from engine.network.testhost import BridgeSpec, ensure_bridge

    with file_lock(SLOTS_LOCK):
        state.slot = next((k for k in range(MAX_SLOTS) if not os.path.exists(f"/sys/class/net/{bridge_name(k)}")),
                          -1)
        if state.slot < 0:
            raise ClusterError(f"{MAX_SLOTS} dev clusters are up on this machine", "take one down first")
        state.bridge, state.gateway = bridge_name(state.slot), str(gateway(state.slot))
        bridge = BridgeSpec(state.bridge, gateway(state.slot))
        ensure_bridge(bridge)
        save_state(state)
    return bridge


def add_test_host(state: ClusterState, bridge: BridgeSpec, index: int) -> NodeEntry:
    """Make node `index`'s test host on the cluster's bridge; its entry, without an agent yet."""
    from engine.network.testhost import create_test_host

    name = f"node{index}"
    net = gateway(state.slot)
    address = IPv4Interface(f"{net.network.network_address + 10 + index}/{net.network.prefixlen}")
    host = create_test_host(netns_name(state.slot, name), name, bridge, address)
    return NodeEntry(name, host.name, str(address), host.host_link)


def remove_network(state: ClusterState) -> list[str]:
    """Remove the nodes' test hosts and the cluster's bridge (no process may be left in them); what was
    removed, one line each. Safe to repeat."""
    from engine.network.testhost import remove_bridge, remove_test_host

    done = []
    for node in state.nodes:
        remove_test_host(node.netns, node.host_link)
        done.append(f"test host {node.netns} ({node.address})")
    if state.bridge and remove_bridge(state.bridge):
        done.append(f"bridge {state.bridge}")
    return done


def host_of(state: ClusterState, node: NodeEntry) -> TestHost:
    """The test host a node's agent runs in (to cut its link, as a failure would)."""
    from engine.network.netns import netns_path
    from engine.network.testhost import TestHost

    return TestHost(node.netns, node.name, netns_path(node.netns), IPv4Interface(node.address), node.host_link,
                    state.bridge)


def enter_argv(state: ClusterState, node: NodeEntry) -> list[str]:
    """The head of an argv that runs the rest inside a node's test host (see `main`)."""
    return [sys.executable, "-m", "rade.devcluster", "enter", node.netns, node.name, node.address, node.host_link,
            state.bridge, "--"]


def main(argv: list[str]) -> int:
    """`python -m rade.devcluster enter NETNS HOSTNAME ADDRESS LINK BRIDGE -- COMMAND...`: become a process
    of a test host (its network namespace, a new UTS namespace with its hostname), then exec COMMAND."""
    from engine.network.netns import netns_path
    from engine.network.testhost import TestHost, enter_test_host

    if len(argv) < 8 or argv[0] != "enter" or argv[6] != "--":
        sys.stderr.write("usage: python -m rade.devcluster enter NETNS HOSTNAME ADDRESS LINK BRIDGE -- COMMAND...\n")
        return 2
    netns, hostname, address, link, bridge = argv[1:6]
    enter_test_host(TestHost(netns, hostname, netns_path(netns), IPv4Interface(address), link, bridge))
    os.execv(argv[7], argv[7:])
