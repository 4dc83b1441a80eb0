"""`rade port` and the paused status as views of a record: Docker's lines, sorted by port, only while the
container runs; `Up ... (Paused)` as `docker ps` words it."""

from __future__ import annotations

from dataclasses import replace

from engine.containers.record import ContainerConfig, ContainerRecord, HostConfig, NetworkState, PortMapping
from engine.containers.status import ContainerStatus
from engine.containers.views import parse_time, port_lines, status_text

STARTED = "2026-01-02T03:04:05.000000000Z"


def _record(status: ContainerStatus) -> ContainerRecord:
    ports = (PortMapping(8080, 32768, "127.0.0.1", "tcp"), PortMapping(53, 40000, "0.0.0.0", "udp"),
             PortMapping(80, 8000, "0.0.0.0", "tcp"))
    return ContainerRecord(id="a" * 64, name="web", created=STARTED, config=ContainerConfig("busybox", "sha"),
                           host_config=HostConfig(), status=status, started_at=STARTED,
                           network=NetworkState(ports=ports))


def test_port_lines_as_docker_prints_them():
    record = _record(ContainerStatus.RUNNING)
    assert port_lines(record) == ["53/udp -> 0.0.0.0:40000", "80/tcp -> 0.0.0.0:8000",
                                  "8080/tcp -> 127.0.0.1:32768"]
    assert port_lines(record, "8080") == ["127.0.0.1:32768"]
    assert port_lines(record, "53/udp") == ["0.0.0.0:40000"]
    assert port_lines(record, "53") == []  # tcp unless a protocol is given
    assert port_lines(_record(ContainerStatus.PAUSED), "80/tcp") == ["0.0.0.0:8000"]
    assert port_lines(replace(record, status=ContainerStatus.EXITED)) == []


def test_paused_status_reads_as_docker_ps_shows_it():
    start = parse_time(STARTED)
    assert status_text(_record(ContainerStatus.PAUSED), start + 300) == "Up 5 minutes (Paused)"
