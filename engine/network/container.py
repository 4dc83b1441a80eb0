"""A container's network, made before its launch and removed with it: `host`, `none` or `bridge`.

`setup_container_network` returns what the launch needs (the namespace file to join, or "host") and
what `inspect` shows (address, gateway, host link). `teardown_container_network` needs only the root and
the container's id — every name is derived from the id — so it works after a crash, after a setup that
failed half-way, and when called twice.

The bridge is one per host while leases live under each state root, so the bridge has its own host-wide
lock (under /run/lock) and is removed when its last port goes, whoever made it: a host running no bridged
container keeps no rade link. Setup holds that lock from the lease to the veth being plugged, so a
concurrent teardown never sees the bridge empty and removes it in between; teardown takes it only to
release the lease and decide on the bridge. Lock order is always bridge lock, then lease file.
"""

from __future__ import annotations

import enum
import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from engine.network.errors import NetworkError
from engine.network.ipam import Lease, LeaseFile, owner_is_gone
from engine.network.links import (
    BridgeSpec,
    bridge_ports,
    bring_loopback_up,
    ensure_bridge,
    link_exists,
    link_name_for,
    plug_veth,
    remove_link,
)
from engine.network.netns import create_netns, delete_netns, netns_exists, netns_path

log = logging.getLogger(__name__)

CONTAINER_BRIDGE = BridgeSpec("rade0", IPv4Interface("198.19.0.1/16"))
LOCK_DIR = Path("/run/lock")


class NetworkMode(enum.Enum):
    HOST = "host"
    NONE = "none"
    BRIDGE = "bridge"

    @classmethod
    def parse(cls, text: str) -> NetworkMode:
        try:
            return cls(text)
        except ValueError:
            raise NetworkError(f"unknown network {text!r}", "use host, none or bridge") from None


@dataclass(frozen=True, slots=True)
class ContainerNetwork:
    """What a container's network is once set up."""

    mode: NetworkMode
    netns: Path | None = None
    address: IPv4Interface | None = None
    gateway: IPv4Address | None = None
    host_link: str | None = None
    bridge: str | None = None
    mac: str | None = None

    @property
    def launch_network(self) -> str:
        """The launch's `network` value: "host", or the path of the namespace file to join."""
        return "host" if self.netns is None else str(self.netns)


def netns_name(container_id: str) -> str:
    return f"rade-{container_id}"


def host_link_name(container_id: str) -> str:
    return link_name_for("rade-", container_id)


def lease_file(root: Path, bridge: BridgeSpec = CONTAINER_BRIDGE) -> LeaseFile:
    return LeaseFile(Path(root) / "network", bridge.gateway)


@contextmanager
def bridge_lock(bridge: BridgeSpec) -> Iterator[None]:
    """The host-wide lock over creating, filling and removing `bridge`."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"rade-bridge-{bridge.name}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def setup_container_network(
    root: Path,
    container_id: str,
    mode: NetworkMode,
    owner_dir: Path,
    bridge: BridgeSpec = CONTAINER_BRIDGE,
) -> ContainerNetwork:
    """Make the network of container `container_id` whose state lives in `owner_dir`.

    On failure everything made so far is removed and a NetworkError is raised.
    """
    if mode is NetworkMode.HOST:
        return ContainerNetwork(NetworkMode.HOST)
    try:
        if mode is NetworkMode.NONE:
            path = create_netns(netns_name(container_id))
            bring_loopback_up(path)
            return ContainerNetwork(NetworkMode.NONE, netns=path)
        with bridge_lock(bridge):
            with lease_file(root, bridge).locked() as pool:
                for gone in pool.reclaim(owner_is_gone):
                    _remove_leftovers(gone)
                lease = pool.allocate(container_id, str(owner_dir))
            ensure_bridge(bridge)
            path = create_netns(netns_name(container_id))
            address = IPv4Interface(f"{lease.address}/{bridge.gateway.network.prefixlen}")
            link = host_link_name(container_id)
            mac = plug_veth(path, bridge, link, address)
    except BaseException as exc:
        try:
            teardown_container_network(root, container_id, bridge)
        except (NetworkError, OSError) as cleanup:  # the setup's own error is the one to report
            log.warning("container %s: cleaning up a failed network setup: %s", container_id, cleanup)
        if isinstance(exc, OSError):
            raise NetworkError(f"cannot set up the network of container {container_id}: {exc}") from exc
        raise
    log.debug("container %s: %s on %s via %s", container_id, address, bridge.name, link)
    return ContainerNetwork(NetworkMode.BRIDGE, path, address, bridge.gateway.ip, link, bridge.name, mac)


def reclaim_leaked_networks(root: Path, bridge: BridgeSpec = CONTAINER_BRIDGE) -> list[Lease]:
    """Release the leases (and remove the links and namespaces) of containers whose directory is gone,
    and the bridge if that leaves it empty; return what was reclaimed. Setup does this on its own; this
    is for a cleanup pass (e.g. after a crash of the whole host's container state)."""
    leases = lease_file(root, bridge)
    with bridge_lock(bridge):
        if not leases.path.exists():
            return []
        with leases.locked() as pool:
            gone = pool.reclaim(owner_is_gone)
            for lease in gone:
                _remove_leftovers(lease)
        if gone and bridge_ports(bridge.name) == []:
            remove_link(bridge.name)
    return gone


def _remove_leftovers(lease: Lease) -> None:
    """The links and namespace of a container that died without its teardown."""
    log.info(
        "reclaiming %s from container %s (its directory %s is gone)",
        lease.address,
        lease.container,
        lease.owner,
    )
    remove_link(host_link_name(lease.container))
    delete_netns(netns_path(netns_name(lease.container)))


def teardown_container_network(root: Path, container_id: str, bridge: BridgeSpec = CONTAINER_BRIDGE) -> None:
    """Remove the veth, namespace and lease of a container, and the bridge if no port is left on it.

    Safe to call twice, for a `host` or `none` container, and after a setup that failed half-way.
    """
    errors: list[str] = []
    for what, step in (
        ("link", lambda: remove_link(host_link_name(container_id))),
        ("namespace", lambda: delete_netns(netns_path(netns_name(container_id)))),
    ):
        try:
            step()
        except (NetworkError, OSError) as exc:
            errors.append(f"{what}: {exc}")
    leases = lease_file(root, bridge)
    with bridge_lock(bridge):
        if leases.path.exists():
            with leases.locked() as pool:
                pool.release(container_id)
        if bridge_ports(bridge.name) == []:
            remove_link(bridge.name)
    if errors:
        raise NetworkError(f"network teardown of container {container_id} incomplete: " + "; ".join(errors))


def is_network_left(root: Path, container_id: str, bridge: BridgeSpec = CONTAINER_BRIDGE) -> bool:
    """True if anything of the container's network remains: its link, namespace or lease."""
    if link_exists(host_link_name(container_id)) or netns_exists(netns_path(netns_name(container_id))):
        return True
    leases = lease_file(root, bridge)
    if not leases.path.exists():
        return False
    with leases.locked() as pool:
        return pool.lease_of(container_id) is not None
