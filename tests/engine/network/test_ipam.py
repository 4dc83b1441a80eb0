"""The address pool: never one address twice, in one process or across many, and leaks reclaimed."""

from __future__ import annotations

import json
import multiprocessing
from ipaddress import IPv4Address, IPv4Interface

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.network.errors import AddressPoolExhausted, NetworkError
from engine.network.ipam import AddressPool, LeaseFile, owner_is_gone

GATEWAY = IPv4Interface("198.19.0.1/16")
SMALL = IPv4Interface("10.9.9.1/29")  # 8 addresses: network, broadcast and gateway leave 5


def test_small_pool_skips_network_broadcast_and_gateway_then_is_exhausted():
    pool = AddressPool(SMALL)
    got = {pool.allocate(f"c{i}", "/x").address for i in range(5)}
    assert got == {IPv4Address(f"10.9.9.{n}") for n in (2, 3, 4, 5, 6)}
    with pytest.raises(AddressPoolExhausted, match="no free address left in 10.9.9.0/29"):
        pool.allocate("c5", "/x")


def test_same_container_gets_its_lease_back():
    pool = AddressPool(GATEWAY)
    first = pool.allocate("abc", "/x")
    assert pool.allocate("abc", "/x") == first
    assert len(pool.leases) == 1


def test_released_address_is_handed_out_again_only_after_the_others():
    pool = AddressPool(SMALL)
    a = pool.allocate("a", "/x").address
    pool.release("a")
    following = [pool.allocate(f"c{i}", "/x").address for i in range(4)]
    assert a not in following
    assert pool.allocate("last", "/x").address == a


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7)), max_size=60))
def test_any_sequence_of_allocations_and_releases_keeps_addresses_unique(steps):
    pool = AddressPool(SMALL)
    for allocate, n in steps:
        if allocate:
            try:
                pool.allocate(f"c{n}", "/x")
            except AddressPoolExhausted:
                assert len(pool.leases) == 5
        else:
            pool.release(f"c{n}")
        addresses = [lease.address for lease in pool.leases]
        assert len(addresses) == len(set(addresses))
        assert all(a in SMALL.network and a != SMALL.ip for a in addresses)


def test_lease_file_round_trips_and_reclaims_leases_whose_container_dir_is_gone(tmp_path):
    alive, dead = tmp_path / "alive", tmp_path / "dead"
    alive.mkdir()
    leases = LeaseFile(tmp_path / "network", GATEWAY)
    with leases.locked() as pool:
        kept = pool.allocate("alive", str(alive))
        lost = pool.allocate("dead", str(dead))
    with leases.locked() as pool:
        assert pool.lease_of("alive") == kept and pool.lease_of("dead") == lost
        assert pool.reclaim(owner_is_gone) == [lost]
    with leases.locked() as pool:
        assert [lease.container for lease in pool.leases] == ["alive"]


def test_lease_file_of_another_subnet_or_garbage_is_a_clear_error(tmp_path):
    leases = LeaseFile(tmp_path, GATEWAY)
    with leases.locked() as pool:
        pool.allocate("a", "/x")
    other_subnet = LeaseFile(tmp_path, SMALL)
    with (
        pytest.raises(NetworkError, match="leases are for 198.19.0.0/16, not 10.9.9.0/29"),
        other_subnet.locked(),
    ):
        pass
    leases.path.write_text("{not json")
    with pytest.raises(NetworkError, match="not JSON"), leases.locked():
        pass
    leases.path.write_text(json.dumps({"version": 1, "subnet": "198.19.0.0/16", "leases": [{}]}))
    with pytest.raises(NetworkError, match="malformed lease file"), leases.locked():
        pass


def test_a_failed_body_writes_nothing(tmp_path):
    leases = LeaseFile(tmp_path, GATEWAY)
    with pytest.raises(RuntimeError), leases.locked() as pool:
        pool.allocate("a", "/x")
        raise RuntimeError("setup failed")
    assert not leases.path.exists()


def _allocate_many(directory: str, worker: int, count: int, queue) -> None:
    leases = LeaseFile(directory, IPv4Interface("198.19.0.1/16"))
    got = []
    for i in range(count):
        with leases.locked() as pool:
            got.append(str(pool.allocate(f"w{worker}-{i}", "/x").address))
    queue.put(got)


def test_no_address_is_leased_twice_across_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_allocate_many, args=(str(tmp_path), w, 40, queue)) for w in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    addresses = [a for got in results for a in got]
    assert len(addresses) == 160 == len(set(addresses))
    with LeaseFile(tmp_path, GATEWAY).locked() as pool:
        assert sorted(str(lease.address) for lease in pool.leases) == sorted(addresses)
