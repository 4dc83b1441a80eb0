"""Container networking costs: the port proxy's throughput against a direct loopback connection, and a
bridged container network's setup + teardown against the same steps done with iproute2's `ip`.

Run as root: `.venv/bin/python bench/network.py`. Traffic goes only over 127.0.0.1; the namespaces and
bridge made here (rade-bnb, 198.18.242.0/24) are removed before it exits.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from engine.network.container import NetworkMode, setup_container_network, teardown_container_network
from engine.network.links import BridgeSpec, remove_link
from engine.network.ports import PortMapping
from engine.network.proxy import PortProxy

LOCAL = IPv4Address("127.0.0.1")
BRIDGE = BridgeSpec("rade-bnb", IPv4Interface("198.18.242.1/24"))
PAYLOAD = 256 << 20
ROUNDS = 5


PUSHER = """
import os, socket, sys, threading, time
payload, rounds, proxy_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
listener = socket.create_server(("127.0.0.1", int(sys.argv[4])))
def serve():
    while True:
        conn, _ = listener.accept()
        with conn:
            total, buf = 0, bytearray(1 << 20)
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(str(total).encode())
threading.Thread(target=serve, daemon=True).start()
block = memoryview(os.urandom(1 << 20))
def push(port):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for _ in range(payload >> 20):
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        assert int(conn.recv(64)) == payload
    return time.perf_counter() - start
for _ in range(rounds):  # alternate, so that both see the same machine state
    print(push(listener.getsockname()[1]), push(proxy_port), flush=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_proxy() -> tuple[float, float]:
    """GB/s direct and through the proxy; the sink and the sender run in another process, so the proxy
    has this one to itself, as it has its supervisor."""
    sink_port = free_port()
    proxy = PortProxy(LOCAL, [PortMapping(LOCAL, 0, sink_port)])
    [bound] = proxy.start()
    try:
        argv = [sys.executable, "-c", PUSHER, str(PAYLOAD), str(ROUNDS), str(bound.host_port), str(sink_port)]
        lines = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split("\n")
    finally:
        proxy.stop()
    pairs = [tuple(map(float, line.split())) for line in lines if line]
    direct = statistics.median(d for d, _ in pairs)
    proxied = statistics.median(p for _, p in pairs)
    return PAYLOAD / direct / 1e9, PAYLOAD / proxied / 1e9


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def with_ip(n: int) -> float:
    """The same set-up and teardown as a bridged container network, by iproute2 commands."""
    name, link = f"rade-bench-{n}", f"rade-bn{n}"
    start = time.perf_counter()
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("link", "set", link, "master", BRIDGE.name, "up")
    ip("-n", name, "addr", "add", f"198.18.242.{10 + n % 200}/24", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "route", "add", "default", "via", str(BRIDGE.gateway.ip))
    ip("link", "del", link)
    ip("netns", "del", name)
    return time.perf_counter() - start


def with_rade(root: Path, n: int) -> float:
    container_id = f"{n:064x}"
    owner = root / container_id
    owner.mkdir()
    start = time.perf_counter()
    setup_container_network(root, container_id, NetworkMode.BRIDGE, owner, BRIDGE)
    teardown_container_network(root, container_id, BRIDGE)
    return time.perf_counter() - start


def bench_setup() -> tuple[float, float, float]:
    """Medians in ms: rade with another container keeping the bridge up (the steady state), rade as the
    only container (so it also makes and removes the bridge), and iproute2 with the bridge kept up."""
    steady, alone, ip_times = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            for n in range(20):
                alone.append(with_rade(root, n))
            resident = root / "resident"
            resident.mkdir()
            setup_container_network(root, "resident", NetworkMode.BRIDGE, resident, BRIDGE)
            for n in range(20, 40):
                steady.append(with_rade(root, n))
            for n in range(20):
                ip_times.append(with_ip(n))
        finally:
            teardown_container_network(root, "resident", BRIDGE)
            remove_link(BRIDGE.name)
    return tuple(statistics.median(times) * 1e3 for times in (steady, alone, ip_times))


def main() -> None:
    direct, proxied = bench_proxy()
    steady_ms, alone_ms, ip_ms = bench_setup()
    print(f"{'measure':<56} {'value':>10}")
    print(f"{'TCP 127.0.0.1 direct, GB/s':<56} {direct:>10.2f}")
    print(f"{'TCP through rade port proxy, GB/s':<56} {proxied:>10.2f}")
    print(f"{'bridged network setup+teardown, rade, ms':<56} {steady_ms:>10.2f}")
    print(f"{'  the same as the only container (bridge made, removed), ms':<56} {alone_ms:>10.2f}")
    print(f"{'the same steps with iproute2 ip commands, ms':<56} {ip_ms:>10.2f}")
    print(f"ratio proxy/direct throughput {proxied / direct:.3f}")
    print(f"ratio rade/ip netns_setup_teardown {steady_ms / ip_ms:.3f}")


if __name__ == "__main__":
    main()
