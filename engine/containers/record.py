"""What a container is: its configuration as asked for (`ContainerConfig`, `HostConfig`) and what it is now
(`ContainerRecord`: status, pid, exit code, times), as frozen values that round-trip through JSON.

The field names follow `docker inspect` where one exists so that `rade inspect` can print them as Docker
users expect. Nothing here touches disk: `engine.containers.store` owns the file.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any

from engine.containers.status import ContainerStatus, advance


def now_rfc3339() -> str:
    """Wall time as Docker prints it (RFC 3339, nanoseconds, UTC): for display and stored times only."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """One volume as resolved at create time: a bind of a host path, or a named/anonymous volume's dir."""

    kind: str  # "bind" | "volume"
    source: str  # the host directory or file
    destination: str  # the path inside the container
    read_only: bool = False
    name: str = ""  # the volume's name ("" for a bind)


@dataclass(frozen=True, slots=True)
class PortMapping:
    """`-p [IP:]HOST:CTR[/proto]`; host_port 0 means "pick a free port" (as `-P` does)."""

    container_port: int
    host_port: int = 0
    host_ip: str = "0.0.0.0"
    protocol: str = "tcp"


@dataclass(frozen=True, slots=True)
class Resources:
    """The cgroup limits asked for; None means unlimited / the kernel's default."""

    cpus: float | None = None
    memory: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    # A cgroup the caller owns that this container's cgroup is made under (the node agent's slice).
    cgroup_parent: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """`Config` in `docker inspect`: what runs inside, as the image and the command line merged it."""

    image: str
    image_id: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = "/"
    user: str = ""
    hostname: str = ""
    tty: bool = False
    open_stdin: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()  # as the image's ExposedPorts keys: "80/tcp"

    @property
    def argv(self) -> tuple[str, ...]:
        return self.entrypoint + self.cmd


@dataclass(frozen=True, slots=True)
class HostConfig:
    """`HostConfig` in `docker inspect`: how the host wires the container (network, volumes, limits)."""

    network: str = "bridge"
    volumes: tuple[VolumeMount, ...] = ()
    volumes_from: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    publish_all: bool = False
    resources: Resources = field(default_factory=Resources)
    read_only: bool = False
    auto_remove: bool = False
    # Capabilities: Docker's default set for `rade run`; the node agent asks for none.
    default_capabilities: bool = True
    nosuid: bool = False  # nosuid and nodev on the root and the volumes: the node agent asks for it
    shm_size: int | None = None  # bytes of /dev/shm; None: the default


@dataclass(frozen=True, slots=True)
class NetworkState:
    """`NetworkSettings`: the address given and the host ports actually bound."""

    ip_address: str = ""
    gateway: str = ""
    prefix_len: int = 0
    mac_address: str = ""
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One container: its identity, configuration and current state, as `state.json` holds it."""

    id: str
    name: str
    created: str
    config: ContainerConfig
    host_config: HostConfig
    status: ContainerStatus = ContainerStatus.CREATED
    pid: int = 0
    supervisor_pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    network: NetworkState = field(default_factory=NetworkState)

    def moved(self, status: ContainerStatus, **changes: Any) -> ContainerRecord:
        """This record in `status` (checked against the transition table) with `changes` applied."""
        return replace(self, status=advance(self.status, status), **changes)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def to_json(record: ContainerRecord) -> dict[str, Any]:
    """A plain dict for json.dump: enums by value, tuples as lists (what `asdict` gives, without its deep
    copies: a record is written at every change of a container's state)."""
    return _plain(record)


def _plain(value: Any) -> Any:
    names = _field_names(type(value)) if hasattr(type(value), "__dataclass_fields__") else None
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a frozen dataclass from its asdict() form, ignoring keys a newer version may have added."""
    kwargs: dict[str, Any] = {}
    names = _field_names(cls)
    for key, value in data.items():
        if key not in names:
            continue
        kwargs[key] = _NESTED.get((cls, key), _as_tuple)(value)
    return cls(**kwargs)


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


_NESTED: dict[tuple[type, str], Any] = {
    (HostConfig, "volumes"): lambda v: tuple(_build(VolumeMount, x) for x in v),
    (HostConfig, "ports"): lambda v: tuple(_build(PortMapping, x) for x in v),
    (HostConfig, "resources"): lambda v: _build(Resources, v),
    (NetworkState, "ports"): lambda v: tuple(_build(PortMapping, x) for x in v),
    (ContainerRecord, "config"): lambda v: _build(ContainerConfig, v),
    (ContainerRecord, "host_config"): lambda v: _build(HostConfig, v),
    (ContainerRecord, "network"): lambda v: _build(NetworkState, v),
    (ContainerRecord, "status"): ContainerStatus,
}


def from_json(data: dict[str, Any]) -> ContainerRecord:
    """The record `to_json` wrote."""
    return _build(ContainerRecord, data)
