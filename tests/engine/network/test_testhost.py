"""Test hosts for a dev cluster: namespaces on one bridge that reach each other and nothing beyond."""

from __future__ import annotations

import os
import socket
import subprocess
from ipaddress import IPv4Interface

import pytest

from engine.network.container import (
    NetworkMode,
    netns_name,
    setup_container_network,
    teardown_container_network,
)
from engine.network.errors import NetworkError
from engine.network.links import BridgeSpec, bridge_ports, link_exists, link_names_in
from engine.network.netns import call_in_netns
from engine.network.testhost import (
    create_test_host,
    cut_test_host,
    ensure_bridge,
    enter_test_host,
    reconnect_test_host,
    remove_bridge,
    remove_test_host,
)

pytestmark = pytest.mark.root


@pytest.fixture
def cluster_bridge(root_only):
    spec = BridgeSpec("rade-tcl", IPv4Interface("198.18.241.1/24"))
    ensure_bridge(spec)
    try:
        yield spec
    finally:
        remove_bridge(spec)


@pytest.fixture
def hosts(cluster_bridge):
    made = []

    def new(n: int):
        host = create_test_host(
            f"rade-t{os.getpid()}-node{n}",
            f"node{n}",
            cluster_bridge,
            IPv4Interface(f"198.18.241.{10 + n}/24"),
        )
        made.append(host)
        return host

    try:
        yield new
    finally:
        for host in made:
            remove_test_host(host)


def test_test_hosts_reach_each_other_and_have_no_route_out(hosts, cluster_bridge, ping, netns_exec):
    one, two = hosts(1), hosts(2)
    assert one.hostname == "node1" and one.bridge == "rade-tcl"
    assert sorted(link_names_in(one.netns)) == ["eth0", "lo"]
    assert ping(one.name, str(two.address.ip))
    assert ping(two.name, str(cluster_bridge.gateway.ip))
    routes = netns_exec(one.name, "ip", "-4", "route").stdout
    assert "default" not in routes
    assert routes.strip() == "198.18.241.0/24 dev eth0 proto kernel scope link src 198.18.241.11"


def test_removing_a_test_host_leaves_nothing_and_is_safe_twice(hosts):
    host = hosts(3)
    remove_test_host(host)
    assert not link_exists(host.host_link) and not host.netns.exists()
    remove_test_host(host)
    remove_test_host(host.name)


def test_address_outside_the_bridge_subnet_is_refused(cluster_bridge):
    with pytest.raises(NetworkError, match="is not a free address of 198.18.241.0/24"):
        create_test_host("rade-tbad", "bad", cluster_bridge, IPv4Interface("198.18.242.5/24"))
    with pytest.raises(NetworkError, match="is not a free address"):
        create_test_host("rade-tbad", "bad", cluster_bridge, cluster_bridge.gateway)
    assert not os.path.exists("/run/netns/rade-tbad")


def test_a_process_started_in_a_test_host_has_its_hostname_and_address(hosts):
    host = hosts(4)
    shown = subprocess.run(
        ["sh", "-c", "hostname; ip -4 -o addr show dev eth0"],
        preexec_fn=lambda: enter_test_host(host),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[0] == "node4"
    assert "inet 198.18.241.14/24" in shown[1]
    assert socket.gethostname() != "node4"


@pytest.mark.slow
def test_a_cut_test_host_is_unreachable_until_reconnected(hosts, ping):
    one, two = hosts(5), hosts(6)
    assert ping(one.name, str(two.address.ip))
    cut_test_host(two)
    assert not ping(one.name, str(two.address.ip))
    reconnect_test_host(two)
    assert ping(one.name, str(two.address.ip))


def test_a_bridged_container_made_from_inside_a_test_host_lives_in_that_host(hosts, tmp_path, ping):
    """An agent running in a test host makes container networks there: the bridge is the test host's."""
    host = hosts(7)
    bridge = BridgeSpec("rade-tin", IPv4Interface("198.18.243.1/24"))
    owner = tmp_path / "c1"
    owner.mkdir()
    try:
        network = call_in_netns(
            host.netns, lambda: setup_container_network(tmp_path, "c1", NetworkMode.BRIDGE, owner, bridge)
        )
        assert call_in_netns(host.netns, lambda: bridge_ports(bridge.name)) == [network.host_link]
        assert bridge_ports(bridge.name) is None  # nothing of it in the machine's own namespace
        assert ping(netns_name("c1"), str(bridge.gateway.ip))
    finally:
        call_in_netns(host.netns, lambda: teardown_container_network(tmp_path, "c1", bridge))
    assert call_in_netns(host.netns, lambda: link_names_in(None)) == ["lo", "eth0"]
    assert not os.path.exists(f"/run/netns/{netns_name('c1')}")
