"""Test hosts: network namespaces on one machine that stand in for the nodes of a cluster.

A test host is a named namespace (/run/netns/NAME) with loopback up and one veth pair into a bridge,
its own address on the bridge's subnet and no default route: it reaches the other test hosts and the
host's address on the bridge, nothing else. Its hostname is recorded for whoever starts processes in it:
`enter_test_host`, called in a child before exec, joins the namespace and sets the hostname in a new UTS
namespace. `cut_test_host` takes its link down (a pulled cable, for failure tests) and
`reconnect_test_host` brings it back. The bridge is made by `ensure_bridge` and removed by
`remove_bridge` once the last host is gone; callers that add and remove hosts concurrently serialise
those two calls themselves.

A dev cluster, in short:

    bridge = BridgeSpec("rade-cl0", IPv4Interface("198.18.0.1/24"))
    ensure_bridge(bridge)                      # the scheduler listens on 198.18.0.1
    host = create_test_host("rade-node1", "node1", bridge, IPv4Interface("198.18.0.11/24"))
    agent = subprocess.Popen(argv, preexec_fn=lambda: enter_test_host(host))
    ...
    agent.terminate(); agent.wait(); remove_test_host(host); remove_bridge(bridge)
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from engine.network.errors import NetworkError
from engine.network.links import (
    BridgeSpec,
    check_link_name,
    ensure_bridge,
    link_name_for,
    plug_veth,
    remove_link,
    set_link_up,
)
from engine.network.netns import create_netns, delete_netns, enter_netns, netns_path

_CLONE_NEWUTS = 0x04000000
_libc = ctypes.CDLL(None, use_errno=True)

__all__ = [
    "BridgeSpec",
    "TestHost",
    "create_test_host",
    "cut_test_host",
    "ensure_bridge",
    "enter_test_host",
    "reconnect_test_host",
    "remove_bridge",
    "remove_test_host",
]


@dataclass(frozen=True, slots=True)
class TestHost:
    """A namespace standing for one host: where it is, what it is called, how it is plugged in."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    hostname: str
    netns: Path
    address: IPv4Interface
    host_link: str
    bridge: str


def default_host_link(name: str) -> str:
    """The host-side veth name of test host `name`."""
    return link_name_for("rade-h", name)


def create_test_host(
    name: str,
    hostname: str,
    bridge: BridgeSpec,
    address: IPv4Interface,
    host_link: str | None = None,
) -> TestHost:
    """Make test host `name` (namespace /run/netns/NAME) at `address` on `bridge`, which must exist.

    `address` must lie in the bridge's subnet and differ from its gateway. On failure nothing is left.
    """
    if address.network != bridge.gateway.network or address.ip == bridge.gateway.ip:
        raise NetworkError(
            f"test host {name}: address {address} is not a free address of {bridge.gateway.network}",
            f"the bridge {bridge.name} is {bridge.gateway}",
        )
    link = check_link_name(host_link or default_host_link(name))
    path = create_netns(name)
    try:
        plug_veth(path, bridge, link, address, default_route=False)
    except BaseException:
        remove_link(link)
        delete_netns(path)
        raise
    return TestHost(name, hostname, path, address, link, bridge.name)


def remove_test_host(host: TestHost | str, host_link: str | None = None) -> None:
    """Remove a test host's veth pair and namespace; safe to call twice. Processes still inside the
    namespace keep it alive until they exit: stop them first."""
    name = host.name if isinstance(host, TestHost) else host
    link = host.host_link if isinstance(host, TestHost) else (host_link or default_host_link(name))
    remove_link(link)
    delete_netns(netns_path(name))


def cut_test_host(host: TestHost) -> None:
    """Cut the host off the bridge (its veth's outer end down), as a pulled cable or a dead switch port:
    its processes keep running and see no error, their packets just go nowhere."""
    set_link_up(host.host_link, False)


def reconnect_test_host(host: TestHost) -> None:
    """Undo `cut_test_host`."""
    set_link_up(host.host_link, True)


def remove_bridge(bridge: BridgeSpec | str) -> bool:
    """Delete a bridge; False if it did not exist."""
    return remove_link(bridge.name if isinstance(bridge, BridgeSpec) else bridge)


def enter_test_host(host: TestHost) -> None:
    """Become a process of `host`: join its network namespace, then a new UTS namespace with its hostname.

    Meant for a child between fork and exec (e.g. subprocess's `preexec_fn` in a process without
    threads); it changes the whole calling process only if the caller has a single thread.
    """
    enter_netns(host.netns)
    if _libc.unshare(_CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUTS): {os.strerror(err)}")
    name = host.hostname.encode()
    if _libc.sethostname(name, len(name)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sethostname({host.hostname}): {os.strerror(err)}")
