"""How containers are shown (ps status words, ports) and the detach-key scanner, without containers."""

from engine.containers.client import DetachScanner
from engine.containers.record import ContainerConfig, ContainerRecord, HostConfig, NetworkState, PortMapping
from engine.containers.status import ContainerStatus
from engine.containers.views import human_duration, parse_time, ps_row, status_text


def _record(**changes):
    base = ContainerRecord(id="a" * 64, name="web", created="2026-01-01T00:00:00.000000000Z",
                           config=ContainerConfig(image="busybox", image_id="x", cmd=("sh", "-c", "echo hi")),
                           host_config=HostConfig())
    from dataclasses import replace

    return replace(base, **changes)


def test_durations_read_as_docker_words_them():
    assert [human_duration(s) for s in (0.2, 1, 30, 90, 600, 3600, 7 * 3600, 3 * 86400)] == [
        "Less than a second", "1 second", "30 seconds", "About a minute", "10 minutes", "About an hour",
        "7 hours", "3 days"]


def test_status_words():
    start = parse_time("2026-01-01T00:00:00.5Z")
    running = _record(status=ContainerStatus.RUNNING, started_at="2026-01-01T00:00:00.5Z")
    assert status_text(running, start + 120) == "Up 2 minutes"
    exited = _record(status=ContainerStatus.EXITED, exit_code=3, finished_at="2026-01-01T00:00:00Z")
    assert status_text(exited, start + 5) == "Exited (3) 5 seconds ago"
    assert status_text(_record(), start) == "Created"


def test_ps_row_shows_bound_ports_and_a_short_id():
    record = _record(network=NetworkState(ports=(PortMapping(80, 8080, "127.0.0.1"),)))
    row = ps_row(record, parse_time(record.created))
    assert row[0] == "a" * 12 and row[5] == "127.0.0.1:8080->80/tcp" and row[6] == "web"


def test_detach_keys_found_even_when_split():
    scanner = DetachScanner()
    assert scanner.feed(b"ls\r\x10") == (b"ls\r", False)
    assert scanner.feed(b"\x11rest") == (b"", True)
    other = DetachScanner()
    assert other.feed(b"a\x10") == (b"a", False) and other.feed(b"b") == (b"\x10b", False)
