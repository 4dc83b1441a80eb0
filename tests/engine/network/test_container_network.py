"""Container networks on the real kernel: bridged containers reach each other and nothing else,
`none` has only loopback, and teardown removes everything, twice and after a failed setup."""

from __future__ import annotations

import multiprocessing
import os
import re
import uuid
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from engine.network.container import (
    CONTAINER_BRIDGE,
    NetworkMode,
    host_link_name,
    is_network_left,
    lease_file,
    netns_name,
    reclaim_leaked_networks,
    setup_container_network,
    teardown_container_network,
)
from engine.network.errors import NetworkError
from engine.network.links import addresses_in, bridge_ports, link_exists, link_names_in
from engine.network.netns import create_netns, delete_netns, netns_path
from jobs.errors import RadeError

pytestmark = pytest.mark.root


@pytest.fixture
def containers(root_only, tmp_path):
    """A factory of container ids with their own directories under a state root; every container's
    network is torn down afterwards, whatever the test did."""
    made: list[tuple[str, object]] = []

    def new(bridge=None) -> tuple[str, Path]:
        container_id = uuid.uuid4().hex
        owner = tmp_path / "containers" / container_id
        owner.mkdir(parents=True)
        made.append((container_id, bridge))
        return container_id, owner

    try:
        yield new
    finally:
        for container_id, bridge in made:
            teardown_container_network(tmp_path, container_id, bridge or CONTAINER_BRIDGE)


def test_two_bridged_containers_ping_each_other(tmp_path, containers, test_bridge, ping):
    a_id, a_dir = containers(test_bridge)
    b_id, b_dir = containers(test_bridge)
    a = setup_container_network(tmp_path, a_id, NetworkMode.BRIDGE, a_dir, test_bridge)
    b = setup_container_network(tmp_path, b_id, NetworkMode.BRIDGE, b_dir, test_bridge)
    assert a.address != b.address
    assert a.address.network == b.address.network == test_bridge.gateway.network
    assert a.launch_network == str(a.netns) == f"/run/netns/{netns_name(a_id)}"
    assert sorted(bridge_ports(test_bridge.name)) == sorted([a.host_link, b.host_link])
    assert ping(netns_name(a_id), str(b.address.ip))
    assert ping(netns_name(b_id), str(a.address.ip))
    assert ping(netns_name(a_id), str(test_bridge.gateway.ip))


def test_bridged_container_has_a_default_route_via_the_gateway_and_the_bridge_forwards_nothing(
    tmp_path, containers, test_bridge, netns_exec
):
    container_id, owner = containers(test_bridge)
    network = setup_container_network(tmp_path, container_id, NetworkMode.BRIDGE, owner, test_bridge)
    routes = netns_exec(netns_name(container_id), "ip", "-4", "route").stdout
    assert f"default via {test_bridge.gateway.ip} dev eth0" in routes
    assert addresses_in(network.netns, "eth0") == [network.address.ip]
    assert (
        f"link/ether {network.mac} "
        in netns_exec(netns_name(container_id), "ip", "link", "show", "eth0").stdout
    )
    with open(f"/proc/sys/net/ipv4/conf/{test_bridge.name}/forwarding") as f:
        assert f.read().strip() == "0"


def test_teardown_leaves_no_link_netns_lease_or_bridge_and_is_idempotent(tmp_path, containers, test_bridge):
    container_id, owner = containers(test_bridge)
    network = setup_container_network(tmp_path, container_id, NetworkMode.BRIDGE, owner, test_bridge)
    assert is_network_left(tmp_path, container_id, test_bridge)
    teardown_container_network(tmp_path, container_id, test_bridge)
    assert not is_network_left(tmp_path, container_id, test_bridge)
    assert not link_exists(network.host_link)
    assert not network.netns.exists()
    assert not link_exists(test_bridge.name)  # it was the last container on the bridge
    teardown_container_network(tmp_path, container_id, test_bridge)
    assert not is_network_left(tmp_path, container_id, test_bridge)


def test_bridge_stays_while_another_container_uses_it(tmp_path, containers, test_bridge):
    a_id, a_dir = containers(test_bridge)
    b_id, b_dir = containers(test_bridge)
    setup_container_network(tmp_path, a_id, NetworkMode.BRIDGE, a_dir, test_bridge)
    b = setup_container_network(tmp_path, b_id, NetworkMode.BRIDGE, b_dir, test_bridge)
    teardown_container_network(tmp_path, a_id, test_bridge)
    assert bridge_ports(test_bridge.name) == [b.host_link]


def test_failed_setup_leaves_nothing_behind(tmp_path, containers, test_bridge):
    container_id, owner = containers(test_bridge)
    # A namespace already holding the container's name makes setup fail after the lease and bridge.
    squatter = create_netns(netns_name(container_id))
    try:
        with pytest.raises(NetworkError, match="already exists"):
            setup_container_network(tmp_path, container_id, NetworkMode.BRIDGE, owner, test_bridge)
    finally:
        delete_netns(squatter)
    assert not is_network_left(tmp_path, container_id, test_bridge)
    assert not link_exists(test_bridge.name)


def test_none_network_has_only_loopback_up(tmp_path, containers, netns_exec):
    container_id, owner = containers()
    network = setup_container_network(tmp_path, container_id, NetworkMode.NONE, owner)
    assert network.mode is NetworkMode.NONE and network.address is None
    assert link_names_in(network.netns) == ["lo"]
    shown = netns_exec(netns_name(container_id), "ip", "-o", "link", "show", "lo").stdout
    assert "state UNKNOWN" in shown or ",UP" in shown
    assert netns_exec(netns_name(container_id), "ip", "-4", "route").stdout.strip() == ""
    teardown_container_network(tmp_path, container_id)
    assert not is_network_left(tmp_path, container_id)


def test_host_network_makes_nothing(tmp_path, containers):
    container_id, owner = containers()
    network = setup_container_network(tmp_path, container_id, NetworkMode.HOST, owner)
    assert network.launch_network == "host"
    assert not is_network_left(tmp_path, container_id)


def test_a_dead_containers_lease_link_and_netns_are_reclaimed(tmp_path, containers, test_bridge):
    dead_id, dead_dir = containers(test_bridge)
    dead = setup_container_network(tmp_path, dead_id, NetworkMode.BRIDGE, dead_dir, test_bridge)
    dead_dir.rmdir()  # the container went without its teardown
    live_id, live_dir = containers(test_bridge)
    setup_container_network(tmp_path, live_id, NetworkMode.BRIDGE, live_dir, test_bridge)
    with lease_file(tmp_path, test_bridge).locked() as pool:
        assert [lease.container for lease in pool.leases] == [live_id]
    assert not link_exists(dead.host_link)
    assert not netns_path(netns_name(dead_id)).exists()


def test_default_bridge_is_rade0_on_198_19(tmp_path, containers, ping):
    container_id, owner = containers()
    network = setup_container_network(tmp_path, container_id, NetworkMode.BRIDGE, owner)
    assert network.bridge == "rade0" and network.gateway == IPv4Address("198.19.0.1")
    assert network.address.ip in CONTAINER_BRIDGE.gateway.network
    assert network.host_link == host_link_name(container_id) and link_exists("rade0")
    assert ping(netns_name(container_id), "198.19.0.1")
    teardown_container_network(tmp_path, container_id)
    assert not is_network_left(tmp_path, container_id)
    assert os.path.exists(tmp_path / "network" / "leases.json")


CHURN_NETNS = r"rade-w\d+n\d+-[0-9a-f]{8}"


def _churn(root: str, bridge, worker: int, rounds: int, queue) -> None:
    """Set up and tear down containers on one bridge, reporting each address and whether it worked."""
    got = []
    for n in range(rounds):
        container_id = f"w{worker}n{n}-{uuid.uuid4().hex[:8]}"
        owner = Path(root) / container_id
        owner.mkdir()
        try:
            network = setup_container_network(Path(root), container_id, NetworkMode.BRIDGE, owner, bridge)
            got.append((container_id, str(network.address.ip), link_exists(bridge.name)))
        except (RadeError, OSError) as exc:  # reported to the test, which fails on it
            got.append((container_id, repr(exc), False))
        if n % 2:
            teardown_container_network(Path(root), container_id, bridge)
    queue.put(got)


@pytest.mark.slow
def test_concurrent_setups_and_teardowns_share_one_bridge_and_never_one_address(tmp_path, test_bridge):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [
        context.Process(target=_churn, args=(str(tmp_path), test_bridge, w, 6, queue)) for w in range(4)
    ]
    for worker in workers:
        worker.start()
    results = []
    try:
        results = [item for _ in workers for item in queue.get(timeout=120)]
        assert all(worked for _, _, worked in results), results
        with lease_file(tmp_path, test_bridge).locked() as pool:
            held = {lease.container: str(lease.address) for lease in pool.leases}
        kept = {cid: address for cid, address, _ in results if cid in held}
        assert held == kept and len(held) == 12  # the even rounds were not torn down
        assert len(set(held.values())) == 12
        assert sorted(bridge_ports(test_bridge.name)) == sorted(host_link_name(cid) for cid in held)
    finally:
        for worker in workers:
            worker.join(timeout=120)
        # Whatever the workers got to make, including by a worker that failed before reporting.
        made = {cid for cid, *_ in results}
        made |= {name[len("rade-") :] for name in os.listdir("/run/netns") if re.fullmatch(CHURN_NETNS, name)}
        for container_id in made:
            teardown_container_network(tmp_path, container_id, test_bridge)
    assert bridge_ports(test_bridge.name) is None


def test_an_explicit_reclaim_pass_removes_dead_containers_and_the_empty_bridge(
    tmp_path, containers, test_bridge
):
    dead_id, dead_dir = containers(test_bridge)
    dead = setup_container_network(tmp_path, dead_id, NetworkMode.BRIDGE, dead_dir, test_bridge)
    assert reclaim_leaked_networks(tmp_path, test_bridge) == []
    dead_dir.rmdir()
    [lease] = reclaim_leaked_networks(tmp_path, test_bridge)
    assert lease.container == dead_id and lease.address == dead.address.ip
    assert not is_network_left(tmp_path, dead_id, test_bridge)
    assert bridge_ports(test_bridge.name) is None
