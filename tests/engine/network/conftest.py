"""Fixtures for the network tests: namespaces, bridges and servers that are always removed, even when a
test fails. Root tests use bridges on their own subnets of 198.18.0.0/15, never a route out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from engine.network.links import BridgeSpec, remove_link
from engine.network.netns import create_netns, delete_netns

BUSYBOX = shutil.which("busybox")

ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    kind = sys.argv[1]
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(sys.argv[2])))
        print("ready", s.getsockname()[1], flush=True)
        while True:
            data, peer = s.recvfrom(65536)
            s.sendto(data, peer)
    def serve(conn):
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                conn.sendall(data)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", int(sys.argv[2])))
    listener.listen(64)
    print("ready", listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


def _netns_exec(name: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a command inside namespace `name` with iproute2 (test-side only)."""
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], check=False, capture_output=True, text=True, timeout=timeout
    )


def _ping(name: str, address: str) -> bool:
    if BUSYBOX is None:
        pytest.skip("busybox is needed for ping")
    return _netns_exec(name, BUSYBOX, "ping", "-c", "1", "-W", "3", address).returncode == 0


@pytest.fixture
def netns_exec():
    """netns_exec(name, *argv): run a command inside namespace `name` with iproute2 (test side only)."""
    return _netns_exec


@pytest.fixture
def ping():
    """ping(name, address): True if one ping from namespace `name` to `address` is answered."""
    return _ping


@pytest.fixture
def root_only() -> None:
    needs_root()


@pytest.fixture
def netns_names(root_only) -> Iterator[list[str]]:
    """Namespace names a test will create (it appends them); each is removed afterwards."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            delete_netns(Path("/run/netns") / name)


@pytest.fixture
def new_netns(netns_names):
    """A factory: new_netns("suffix") creates /run/netns/rade-t<pid>-suffix, removed afterwards."""

    def make(suffix: str) -> Path:
        name = f"rade-t{os.getpid()}-{suffix}"
        netns_names.append(name)
        return create_netns(name)

    return make


@pytest.fixture
def test_bridge(root_only) -> Iterator[BridgeSpec]:
    """A bridge spec of the test's own (rade-tbr, 198.18.240.1/24); the link is removed afterwards."""
    spec = BridgeSpec("rade-tbr", IPv4Interface("198.18.240.1/24"))
    try:
        yield spec
    finally:
        remove_link(spec.name)


@pytest.fixture
def echo_server():
    """A factory: echo_server(netns_name, port, kind="tcp") starts an echo server inside the namespace (the
    host's if netns_name is empty) and returns its port once it listens; every server is killed by its
    PID afterwards."""
    started: list[subprocess.Popen] = []

    def start(netns: str, port: int = 0, kind: str = "tcp") -> int:
        argv = [sys.executable, "-c", ECHO_SERVER, kind, str(port)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        word, bound = proc.stdout.readline().split()
        assert word == "ready"
        return int(bound)

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
            proc.stdout.close()
