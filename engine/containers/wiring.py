"""What the supervisor connects around a launch: the container's network (only a bridge needs setup of
ours: `host` and `none` are the launch's own), its published ports through the userspace proxy, and new
named volumes filled from the image on first use."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.containers.record import ContainerRecord, NetworkState, PortMapping
from engine.containers.volumes import copy_image_content

FILL_MARKER = "fill-pending"


def setup_network(root: str | os.PathLike[str], record: ContainerRecord,
                  owner_dir: Path) -> tuple[NetworkState, str, str | None]:
    """(what inspect shows, the launch's `network` value, the /etc/hosts text or None for the default)."""
    mode_name = record.host_config.network
    # pyroute2's import alone costs a third of a second: only a bridge pays it.
    if mode_name in ("host", "none"):
        return NetworkState(), mode_name, None
    from engine.network.container import NetworkMode, setup_container_network
    from engine.network.hosts import render_hosts

    net = setup_container_network(Path(root), record.id, NetworkMode.parse(mode_name), owner_dir)
    address = net.address.ip if net.address is not None else None
    state = NetworkState(ip_address=str(address or ""), gateway=str(net.gateway or ""),
                         prefix_len=net.address.network.prefixlen if net.address is not None else 0)
    from engine.containers.launchspec import default_hostname

    hostname = default_hostname(record)
    return state, net.launch_network, render_hosts(hostname, address, [record.name])


def teardown_network(root: str | os.PathLike[str], container_id: str, mode_name: str) -> None:
    """Remove a bridge container's veth, namespace and lease; nothing to do for host and none."""
    if mode_name in ("host", "none"):
        return
    from engine.network.container import teardown_container_network

    teardown_container_network(Path(root), container_id)


def publish_ports(record: ContainerRecord, network: NetworkState) -> tuple[Any, NetworkState]:
    """Start the port proxy for the container's `-p`/`-P` mappings: (the proxy or None, the network
    state with the host ports actually bound)."""
    if not record.host_config.ports:
        return None, network
    from ipaddress import IPv4Address

    from engine.network import ports as net_ports
    from engine.network.proxy import PortProxy

    mappings = [net_ports.PortMapping(IPv4Address(p.host_ip), p.host_port, p.container_port,
                                      net_ports.Protocol(p.protocol)) for p in record.host_config.ports]
    proxy = PortProxy(IPv4Address(network.ip_address), mappings)
    bound = proxy.start()
    return proxy, replace(network, ports=tuple(PortMapping(m.container_port, m.host_port, str(m.host_ip),
                                                           m.protocol.value) for m in bound))


def mark_new_volume(data_dir: Path) -> None:
    (data_dir.parent / FILL_MARKER).touch()


def fill_new_volumes(record: ContainerRecord, layers: list[Path]) -> None:
    """Copy the image's content at each new named volume's path into it, once."""
    for volume in record.host_config.volumes:
        marker = Path(volume.source).parent / FILL_MARKER
        if volume.kind == "volume" and marker.exists():
            copy_image_content(layers, volume.destination, Path(volume.source))
            marker.unlink()
