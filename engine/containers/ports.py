"""Parsing `-p` as Docker reads it: `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, each with `/tcp` or `/udp`.

Host ports bind on 127.0.0.1 unless an address is given, since the userspace proxy is the only way in.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.containers.record import PortMapping
from engine.errors import ContainerError


def _port(text: str, spec: str, allow_zero: bool) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise ContainerError(f"-p {spec}: {text!r} is not a port number", "use e.g. -p 8080:80")
    return int(text)


def parse_port(spec: str) -> PortMapping:
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise ContainerError(f"-p {spec}: protocol {proto!r} is not tcp or udp", "use e.g. -p 53:53/udp")
    parts = body.split(":")
    if len(parts) == 1:
        return PortMapping(_port(parts[0], spec, False), 0, protocol=proto)
    if len(parts) == 2:
        return PortMapping(_port(parts[1], spec, False), _port(parts[0] or "0", spec, True), protocol=proto)
    if len(parts) == 3:
        ip = parts[0] or "127.0.0.1"
        return PortMapping(_port(parts[2], spec, False), _port(parts[1] or "0", spec, True), ip, proto)
    raise ContainerError(f"-p {spec}: expected [IP:][HOST:]CTR[/PROTO]", "use e.g. -p 8080:80")


def parse_ports(specs: Iterable[str]) -> list[PortMapping]:
    return [parse_port(spec) for spec in specs]
