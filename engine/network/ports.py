"""Published ports: the values of `-p` and `-P`, parsed into mappings (no sockets here).

Forms accepted, as Docker's: `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, each optionally ending in
`/tcp` or `/udp`. A host port of 0 (or none given) means "any free port", chosen when the proxy binds.
`-P` publishes every port the image EXPOSEs (as `80/tcp`, `53/udp` or `8080`) to a free host port.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from engine.network.errors import PortSpecError

ANY_ADDRESS = IPv4Address("0.0.0.0")


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """Host `host_ip:host_port` forwards to the container's `container_port` over `protocol`."""

    host_ip: IPv4Address
    host_port: int
    container_port: int
    protocol: Protocol = Protocol.TCP

    def with_host_port(self, port: int) -> PortMapping:
        return replace(self, host_port=port)

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol.value}"


def _port(text: str, what: str, spec: str, allow_zero: bool) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise PortSpecError(
            f"invalid {what} port {text!r} in -p {spec}",
            "a port is a number from 1 to 65535; the form is [IP:][HOST:]CTR[/tcp|/udp]",
        )
    return int(text)


def _protocol(text: str, spec: str) -> Protocol:
    try:
        return Protocol(text.lower())
    except ValueError:
        raise PortSpecError(f"unknown protocol {text!r} in -p {spec}", "use tcp or udp") from None


def parse_publish(spec: str) -> PortMapping:
    """One `-p` value as a mapping."""
    body, _, proto_text = spec.partition("/")
    protocol = _protocol(proto_text, spec) if proto_text else Protocol.TCP
    parts = body.split(":")
    if len(parts) == 1:
        ip_text, host_text, ctr_text = "", "", parts[0]
    elif len(parts) == 2:
        ip_text, (host_text, ctr_text) = "", parts
    elif len(parts) == 3:
        ip_text, host_text, ctr_text = parts
    else:
        raise PortSpecError(f"cannot parse -p {spec}", "the form is [IP:][HOST:]CTR[/tcp|/udp], e.g. 8080:80")
    try:
        host_ip = IPv4Address(ip_text) if ip_text else ANY_ADDRESS
    except ValueError:
        raise PortSpecError(
            f"invalid host address {ip_text!r} in -p {spec}", "give an IPv4 address"
        ) from None
    host_port = _port(host_text, "host", spec, allow_zero=True) if host_text else 0
    return PortMapping(host_ip, host_port, _port(ctr_text, "container", spec, allow_zero=False), protocol)


def parse_exposed(exposed: str) -> tuple[int, Protocol]:
    """An EXPOSE entry (`80`, `80/tcp`, `53/udp`) as (port, protocol)."""
    port_text, _, proto_text = exposed.partition("/")
    protocol = _protocol(proto_text, exposed) if proto_text else Protocol.TCP
    return _port(port_text, "exposed", exposed, allow_zero=False), protocol


def publish_all(exposed: Iterable[str], host_ip: IPv4Address = ANY_ADDRESS) -> list[PortMapping]:
    """`-P`: every exposed port to a free host port on `host_ip`."""
    mappings = []
    for entry in exposed:
        port, protocol = parse_exposed(entry)
        mappings.append(PortMapping(host_ip, 0, port, protocol))
    return mappings


def merge_publish(explicit: Iterable[PortMapping], automatic: Iterable[PortMapping]) -> list[PortMapping]:
    """The `-p` mappings, then the `-P` ones for container ports `-p` did not already publish."""
    explicit = list(explicit)
    taken = {(m.container_port, m.protocol) for m in explicit}
    return explicit + [m for m in automatic if (m.container_port, m.protocol) not in taken]
