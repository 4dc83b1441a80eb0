"""Bridges and veth pairs: the links that join a network namespace to a bridge, made through rtnetlink.

A bridge here is an isolated segment: it gets its gateway address and nothing else — no NAT, no firewall
rule, and forwarding disabled on it, so packets from its namespaces can reach the host's address on the
bridge and each other, never anything beyond. A veth pair is made with its inner end created directly
inside the target namespace (so the inner name, such as eth0, never clashes with a host link), its outer
end enslaved to the bridge.

Creation is idempotent: two processes ensuring one bridge at once both succeed (an EEXIST from the
kernel means the other won); callers that also decide when to remove the bridge serialise both under
their own lock.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from engine.network.errors import NetworkError
from engine.network.netns import route_socket

IFNAMSIZ = 15  # the kernel's limit on a link name, without its terminating NUL


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """A bridge by name with the gateway address its namespaces route through (e.g. 198.19.0.1/16)."""

    name: str
    gateway: IPv4Interface

    def __post_init__(self) -> None:
        check_link_name(self.name)


def check_link_name(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise NetworkError(f"invalid link name {name!r}", f"at most {IFNAMSIZ} characters, no '/' or spaces")
    return name


def link_name_for(prefix: str, key: str) -> str:
    """A stable link name for `key` (a container id, a host name) that fits the kernel's limit."""
    room = IFNAMSIZ - len(prefix)
    if re.fullmatch(r"[0-9a-f]+", key) and len(key) >= room:
        return prefix + key[:room]
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:room]


def _index(ipr, name: str) -> int | None:
    """The index of link `name` in the handle's namespace, by one RTM_GETLINK (not a dump of all links)."""
    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _ignore_exists(call) -> None:
    try:
        call()
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass  # IPv6 compiled out or disabled at boot: nothing to turn off


def ensure_bridge(spec: BridgeSpec) -> int:
    """Create the bridge if missing, give it its gateway address, bring it up; return its index."""
    try:
        with route_socket() as ipr:
            _ignore_exists(lambda: ipr.link("add", ifname=spec.name, kind="bridge"))
            index = _index(ipr, spec.name)
            if index is None:
                raise NetworkError(f"bridge {spec.name} vanished while being set up", "try again")
            _ignore_exists(
                lambda: ipr.addr(
                    "add", index=index, address=str(spec.gateway.ip), prefixlen=spec.gateway.network.prefixlen
                )
            )
            ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise NetworkError(f"cannot set up bridge {spec.name}: {os.strerror(exc.code)}") from exc
    # Whatever the host's global setting, nothing that arrives on this bridge is routed further.
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{spec.name}/forwarding", "0")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{spec.name}/disable_ipv6", "1")
    return index


def remove_link(name: str) -> bool:
    """Delete a link of the host namespace by name (a veth also takes its peer); False if absent."""
    try:
        with route_socket() as ipr:
            ipr.link("del", ifname=name)
            return True
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return False
        raise NetworkError(f"cannot remove link {name}: {os.strerror(exc.code)}") from exc


def set_link_up(name: str, up: bool) -> None:
    """Bring a link of the host namespace up or down (down cuts whatever is plugged in through it)."""
    try:
        with route_socket() as ipr:
            index = _index(ipr, name)
            if index is None:
                raise NetworkError(f"no link named {name}")
            ipr.link("set", index=index, state="up" if up else "down")
    except NetlinkError as exc:
        raise NetworkError(f"cannot set {name} {'up' if up else 'down'}: {os.strerror(exc.code)}") from exc


def bridge_ports(name: str) -> list[str] | None:
    """The names of the links enslaved to bridge `name`, or None if there is no such bridge.

    Asked over netlink with a dump filtered by master, not read from sysfs: /sys shows the namespace it
    was mounted in, which is not the caller's when the caller runs in a test host's namespace.
    """
    with route_socket() as ipr:
        index = _index(ipr, name)
        if index is None:
            return None
        return sorted(link.get("IFLA_IFNAME") for link in ipr.link("dump", master=index))


def link_exists(name: str) -> bool:
    with route_socket() as ipr:
        return _index(ipr, name) is not None


def bring_loopback_up(netns: Path) -> None:
    """Set `lo` up inside the namespace at `netns` (a new namespace has it down)."""
    try:
        with route_socket(netns) as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
    except NetlinkError as exc:
        raise NetworkError(f"cannot bring up lo in {netns}: {os.strerror(exc.code)}") from exc


def plug_veth(
    netns: Path,
    bridge: BridgeSpec,
    host_name: str,
    address: IPv4Interface,
    inner_name: str = "eth0",
    default_route: bool = True,
    loopback: bool = True,
) -> str:
    """Join the namespace at `netns` to `bridge` with a veth pair: `host_name` enslaved to the bridge,
    `inner_name` inside with `address`, both up, (if asked) a default route via the bridge's gateway and
    the namespace's `lo` up. Two netlink handles in all, one per namespace. Returns the inner end's MAC
    address.
    """
    check_link_name(host_name)
    check_link_name(inner_name)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with route_socket() as ipr:
            bridge_index = _index(ipr, bridge.name)
            if bridge_index is None:
                raise NetworkError(
                    f"bridge {bridge.name} does not exist", "create it before plugging into it"
                )
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": inner_name, "net_ns_fd": fd})
            ipr.link("set", index=_index(ipr, host_name), master=bridge_index, state="up")
        with route_socket(netns) as ipr:
            if loopback:
                ipr.link("set", index=_index(ipr, "lo"), state="up")
            [inner] = ipr.link("get", ifname=inner_name)
            inner_index = inner["index"]
            ipr.addr("add", index=inner_index, address=str(address.ip), prefixlen=address.network.prefixlen)
            ipr.link("set", index=inner_index, state="up")
            if default_route:
                ipr.route("add", dst="0.0.0.0/0", gateway=str(bridge.gateway.ip))
        return inner.get("IFLA_ADDRESS")
    except NetlinkError as exc:
        raise NetworkError(
            f"cannot plug {host_name} into {bridge.name}: {os.strerror(exc.code)}",
            "another link may already have this name" if exc.code == errno.EEXIST else None,
        ) from exc
    finally:
        os.close(fd)


def addresses_in(netns: Path | None, name: str) -> list[IPv4Address]:
    """The IPv4 addresses of link `name` in the namespace at `netns` (the host's if None)."""
    with route_socket(netns) as ipr:
        index = _index(ipr, name)
        if index is None:
            return []
        return [IPv4Address(a.get("IFA_ADDRESS")) for a in ipr.get_addr(index=index, family=2)]


def link_names_in(netns: Path | None) -> list[str]:
    """The names of every link in the namespace at `netns` (the host's if None)."""
    with route_socket(netns) as ipr:
        return [link.get("IFLA_IFNAME") for link in ipr.get_links()]
