"""The port proxy: megabytes both ways, half-close, refusals, UDP, and a clean stop."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from ipaddress import IPv4Address

import pytest

from engine.network.container import (
    NetworkMode,
    netns_name,
    setup_container_network,
    teardown_container_network,
)
from engine.network.errors import NetworkError
from engine.network.ports import PortMapping, Protocol, parse_publish
from engine.network.proxy import PortProxy

LOCAL = IPv4Address("127.0.0.1")


def exchange(port: int, payload: bytes, chunk: int = 1 << 16) -> bytes:
    """Send `payload` through 127.0.0.1:port while reading the echo, then half-close; return the echo."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:

        def send() -> None:
            view = memoryview(payload)
            for start in range(0, len(view), chunk):
                conn.sendall(view[start : start + chunk])
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while data := conn.recv(1 << 20):
            received += data
        sender.join()
    return bytes(received)


@pytest.fixture
def proxies():
    started: list[PortProxy] = []

    def start(target: IPv4Address, *mappings: PortMapping) -> list[PortMapping]:
        proxy = PortProxy(target, mappings)
        started.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.mark.root
@pytest.mark.slow
def test_proxy_carries_megabytes_both_ways_to_an_echo_server_in_a_container_netns(
    tmp_path, test_bridge, echo_server, proxies
):
    container_id = uuid.uuid4().hex
    owner = tmp_path / container_id
    owner.mkdir()
    try:
        network = setup_container_network(tmp_path, container_id, NetworkMode.BRIDGE, owner, test_bridge)
        echo_server(netns_name(container_id), 7000)
        [bound] = proxies(network.address.ip, parse_publish("127.0.0.1:0:7000"))
        assert bound.host_ip == LOCAL and bound.host_port > 0 and bound.container_port == 7000
        payloads = [os.urandom(6 << 20), os.urandom(3 << 20)]
        results: list[bytes] = [b"", b""]

        def run(i: int) -> None:
            results[i] = exchange(bound.host_port, payloads[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for payload, result in zip(payloads, results):
            assert len(result) == len(payload)
            assert hashlib.sha256(result).digest() == hashlib.sha256(payload).digest()
    finally:
        teardown_container_network(tmp_path, container_id, test_bridge)


def test_half_closed_client_gets_every_byte_back_and_many_connections_work(echo_server, proxies):
    port = echo_server("")
    [bound] = proxies(LOCAL, PortMapping(LOCAL, 0, port))
    for size in (0, 1, 70_000, 1 << 20):
        payload = os.urandom(size)
        assert exchange(bound.host_port, payload) == payload


def test_a_port_already_in_use_is_a_clear_error(proxies):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(NetworkError, match=f"cannot publish 127.0.0.1:{port}->80/tcp") as caught:
            proxies(LOCAL, PortMapping(LOCAL, 0, 81), PortMapping(LOCAL, port, 80))
        assert caught.value.hint == "choose another host port"


def test_refused_connection_to_the_container_closes_the_client(proxies):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # bound, never listening: connections are refused
        [bound] = proxies(LOCAL, PortMapping(LOCAL, 0, dead_port))
        with socket.create_connection(("127.0.0.1", bound.host_port), timeout=10) as conn:
            assert conn.recv(10) == b""


def test_stop_closes_open_connections_and_frees_the_port(echo_server):
    port = echo_server("")
    proxy = PortProxy(LOCAL, [PortMapping(LOCAL, 0, port)])
    [bound] = proxy.start()
    conn = socket.create_connection(("127.0.0.1", bound.host_port), timeout=10)
    conn.sendall(b"ping")
    assert conn.recv(10) == b"ping"
    proxy.stop()
    proxy.stop()
    try:
        assert conn.recv(10) == b""
    except ConnectionResetError:
        pass
    finally:
        conn.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", bound.host_port))


def test_udp_datagrams_go_both_ways(echo_server, proxies):
    port = echo_server("", 0, "udp")
    [bound] = proxies(LOCAL, PortMapping(LOCAL, 0, port, Protocol.UDP))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        for message in (b"one", os.urandom(60_000)):
            client.sendto(message, ("127.0.0.1", bound.host_port))
            assert client.recvfrom(65536)[0] == message


def test_stop_leaves_no_descriptor_open(echo_server):
    port = echo_server("")
    before = len(os.listdir("/proc/self/fd"))
    proxy = PortProxy(LOCAL, [PortMapping(LOCAL, 0, port), PortMapping(LOCAL, 0, port, Protocol.UDP)])
    [tcp, _] = proxy.start()
    for _ in range(3):
        assert exchange(tcp.host_port, b"x" * 100_000) == b"x" * 100_000
    idle = socket.create_connection(("127.0.0.1", tcp.host_port), timeout=10)
    idle.sendall(b"ping")
    assert idle.recv(10) == b"ping"
    proxy.stop()
    idle.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_an_idle_udp_flow_is_dropped_and_the_next_datagram_opens_a_new_one():
    """The container side names the proxy's source port in each reply: a new port means a new flow."""
    now = [0.0]
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            data, peer = server.recvfrom(100)
            if data == b"stop":
                return
            server.sendto(str(peer[1]).encode(), peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    proxy = PortProxy(
        LOCAL, [PortMapping(LOCAL, 0, server.getsockname()[1], Protocol.UDP)], clock=lambda: now[0]
    )
    [bound] = proxy.start()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for client in (a, b):
            client.settimeout(10)

        def source_port(client: socket.socket) -> bytes:
            client.sendto(b"?", ("127.0.0.1", bound.host_port))
            return client.recvfrom(100)[0]

        first = source_port(a)
        assert source_port(a) == first  # within the idle time: the same flow
        now[0] += proxy.udp_idle + 1
        source_port(b)  # any traffic lets the proxy expire what went idle
        assert source_port(a) != first
    finally:
        proxy.stop()
        a.sendto(b"stop", server.getsockname())
        thread.join(timeout=10)
        for sock in (a, b, server):
            sock.close()


def test_fifty_simultaneous_connections_each_get_their_own_bytes_back(echo_server, proxies):
    port = echo_server("")
    [bound] = proxies(LOCAL, PortMapping(LOCAL, 0, port))
    payloads = [os.urandom(50_000 + i) for i in range(50)]
    results: list[bytes | None] = [None] * 50

    def run(i: int) -> None:
        results[i] = exchange(bound.host_port, payloads[i], chunk=8192)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == payloads
