"""How containers are shown: the `docker inspect`-shaped document and the `ps` table rows.

Pure functions of a record (and the clock, for "Up 5 minutes"), so the shapes are tested without any
container running.
"""

from __future__ import annotations

import calendar
import shlex
import time
from typing import Any

from engine.containers.record import ContainerRecord
from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerDir

PS_COLUMNS = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")


def parse_time(stamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC stamp as rade writes them; None for the zero time."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head = stamp.rstrip("Z").split(".")[0]
    try:
        return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """As Docker words it: "Less than a second", "5 seconds", "About a minute", "3 hours", "2 days"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = s // 86400
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{days // 7} weeks"
    return f"{days // 30} months"


def ago(stamp: str, now: float) -> str:
    when = parse_time(stamp)
    return "" if when is None else f"{human_duration(max(0.0, now - when))} ago"


def status_text(record: ContainerRecord, now: float) -> str:
    if record.status is ContainerStatus.RUNNING:
        started = parse_time(record.started_at)
        return f"Up {human_duration(now - started) if started else ''}".rstrip()
    if record.status is ContainerStatus.PAUSED:
        started = parse_time(record.started_at)
        return f"Up {human_duration(now - started) if started else ''} (Paused)".replace("  ", " ")
    if record.status is ContainerStatus.EXITED:
        return f"Exited ({record.exit_code}) {ago(record.finished_at, now)}".rstrip()
    if record.status is ContainerStatus.REMOVING:
        return "Removal In Progress"
    return "Created"


def ports_text(record: ContainerRecord) -> str:
    ports = record.network.ports or record.host_config.ports
    return ", ".join(f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" if p.host_port
                     else f"{p.container_port}/{p.protocol}" for p in ports)


def port_lines(record: ContainerRecord, private: str | None = None) -> list[str]:
    """`docker port`: `80/tcp -> 0.0.0.0:8080` for each published port of a running container, sorted by
    port; with `private` ("80" or "80/udp", tcp by default) only the host addresses of that port. Nothing
    for a container that is not running (its ports are not bound then)."""
    if record.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        return []
    ports = sorted(record.network.ports, key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port))
    if private is None:
        return [f"{p.container_port}/{p.protocol} -> {p.host_ip}:{p.host_port}" for p in ports]
    number, _, protocol = private.partition("/")
    return [f"{p.host_ip}:{p.host_port}" for p in ports
            if str(p.container_port) == number and p.protocol == (protocol or "tcp")]


def ps_row(record: ContainerRecord, now: float) -> tuple[str, ...]:
    command = " ".join(shlex.quote(a) for a in record.config.argv)
    if len(command) > 20:
        command = command[:19] + "…"
    return (record.short_id, record.config.image, f'"{command}"', ago(record.created, now),
            status_text(record, now), ports_text(record), record.name)


def inspect(record: ContainerRecord, cdir: ContainerDir) -> dict[str, Any]:
    """The record as `docker inspect` shapes a container."""
    cfg, host, res, net = record.config, record.host_config, record.host_config.resources, record.network
    argv = cfg.argv
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for p in host.ports:
        port_bindings.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port) if p.host_port else ""})
    live_ports: dict[str, list[dict[str, str]] | None] = {e: None for e in cfg.exposed_ports}
    for p in net.ports:
        key = f"{p.container_port}/{p.protocol}"
        live_ports[key] = (live_ports.get(key) or []) + [{"HostIp": p.host_ip, "HostPort": str(p.host_port)}]
    return {
        "Id": record.id,
        "Created": record.created,
        "Path": argv[0] if argv else "",
        "Args": list(argv[1:]),
        "State": {
            "Status": record.status.value,
            "Running": record.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED),
            "Paused": record.status is ContainerStatus.PAUSED,
            "Restarting": False,
            "OOMKilled": record.oom_killed,
            "Dead": False,
            "Pid": record.pid,
            "ExitCode": record.exit_code,
            "Error": record.error,
            "StartedAt": record.started_at,
            "FinishedAt": record.finished_at,
        },
        "Image": cfg.image_id,
        "ResolvConfPath": str(cdir.path / "resolv.conf"),
        "HostnamePath": str(cdir.path / "hostname"),
        "HostsPath": str(cdir.path / "hosts"),
        "LogPath": str(cdir.log),
        "Name": "/" + record.name,
        "RestartCount": record.restart_count,
        "Driver": "overlay",
        "HostConfig": {
            "Binds": [f"{v.source if v.kind == 'bind' else v.name}:{v.destination}{':ro' if v.read_only else ''}"
                      for v in host.volumes],
            "NetworkMode": host.network,
            "PortBindings": port_bindings,
            "PublishAllPorts": host.publish_all,
            "AutoRemove": host.auto_remove,
            "VolumesFrom": list(host.volumes_from),
            "ReadonlyRootfs": host.read_only,
            "ShmSize": host.shm_size or 0,
            "NanoCpus": int((res.cpus or 0) * 1e9),
            "CpuShares": res.cpu_shares or 0,
            "CpusetCpus": res.cpuset_cpus or "",
            "CpusetMems": res.cpuset_mems or "",
            "Memory": res.memory or 0,
            "MemorySwap": res.memory_swap or 0,
            "PidsLimit": res.pids_limit,
            "CgroupParent": res.cgroup_parent or "",
        },
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": str(cdir.upper), "WorkDir": str(cdir.work),
                                                    "MergedDir": str(cdir.rootfs)}},
        "Mounts": [{"Type": v.kind, "Name": v.name, "Source": v.source, "Destination": v.destination,
                    "Mode": "ro" if v.read_only else "", "RW": not v.read_only} for v in host.volumes],
        "Config": {
            "Hostname": cfg.hostname or record.id[:12],
            "User": cfg.user,
            "AttachStdin": cfg.open_stdin,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": list(cfg.env),
            "Cmd": list(cfg.cmd),
            "Entrypoint": list(cfg.entrypoint) or None,
            "Image": cfg.image,
            "WorkingDir": cfg.workdir,
            "Labels": dict(cfg.labels),
            "ExposedPorts": {e: {} for e in cfg.exposed_ports},
        },
        "NetworkSettings": {
            "IPAddress": net.ip_address,
            "IPPrefixLen": net.prefix_len,
            "Gateway": net.gateway,
            "MacAddress": net.mac_address,
            "Ports": live_ports,
        },
    }
