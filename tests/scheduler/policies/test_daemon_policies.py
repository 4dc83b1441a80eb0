"""Scheduling policies end to end: the real scheduler daemon and simulated nodes as processes on 127.0.0.1,
driven through the `rade` command: arrays folded, throttled and cancelled by name, the expected start of a
blocked job, accounting after the fact, and the Prometheus endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from ..daemons import Daemons, free_port, scrape, wait_until


@pytest.fixture
def cluster(tmp_path) -> Iterator[Daemons]:
    """A scheduler with metrics on a free loopback port, and two simulated nodes of 2 CPUs."""
    d = Daemons(tmp_path)
    d.metrics_port = free_port()
    with open(d.config, "a", encoding="utf-8") as handle:
        handle.write(f"metrics_port: {d.metrics_port}\n")
    try:
        d.start_scheduler()
        d.start_agents("sim", 2, cpus=2)
        yield d
    finally:
        d.close()


def submit(d: Daemons, tmp_path, name: str, **fields) -> list[int]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "image": "busybox", **fields}))
    done = d.rade("submit", str(path))
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]



@pytest.mark.slow
def test_array_throttled_folded_cancelled_by_name_and_accounted(cluster, tmp_path):
    d = cluster
    ids = submit(d, tmp_path, "sweep", command=["sleep", "1"], array="0-5%2", time_limit="1m",
                 resources={"cpus": 1, "memory": "64M"})
    first = ids[0]
    assert len(ids) == 6
    queue = d.rade("queue", "--all")
    assert queue.returncode == 0, queue.stderr
    assert f"{first}_[" in queue.stdout and "%2]" in queue.stdout
    running = [r for r in d.client.queue(None, False) if r["state"] in ("STARTING", "RUNNING")]
    assert len(running) <= 2
    cancel = d.rade("cancel", f"{first}_5")
    assert cancel.returncode == 0, cancel.stderr
    wait_until(lambda: not [r for r in d.client.queue(None, False) if r["array_of"] == first], timeout=60,
               what="the array to finish")
    acct = d.rade("acct", "--all", "--json")
    assert acct.returncode == 0, acct.stderr
    rows = {r["job"]: r for r in json.loads(acct.stdout)}
    assert rows[f"{first}_5"]["state"] == "CANCELLED"
    for index in range(5):
        row = rows[f"{first}_{index}"]
        assert row["state"] == "COMPLETED" and row["exit_code"] == 0 and row["nodes"]
        assert row["elapsed"] >= 0.5 and row["cpu_seconds"] > 0
    metrics = scrape(d.metrics_port)
    assert metrics["rade_scheduler_placements_total"][()] >= 5
    assert metrics["rade_scheduler_nodes"][(("state", "IDLE"),)] + \
        metrics["rade_scheduler_nodes"][(("state", "MIXED"),)] == 2
    assert metrics["rade_scheduler_cycle_seconds_count"][()] > 0


@pytest.mark.slow
def test_blocked_job_shows_its_expected_start_and_a_whole_array_cancels(cluster, tmp_path):
    d = cluster
    [busy] = submit(d, tmp_path, "busy", command=["sleep", "30"], time_limit="1m", tasks=2,
                    resources={"cpus": 2, "memory": "64M"})
    wait_until(lambda: d.client.show(busy)["state"] == "RUNNING", what="the busy job to run")
    [wide] = submit(d, tmp_path, "wide", command=["true"], time_limit="1m", tasks=2,
                    resources={"cpus": 2, "memory": "64M"})
    ids = submit(d, tmp_path, "later", command=["true"], array="0-3", time_limit="1m",
                 resources={"cpus": 2, "memory": "64M"})
    wait_until(lambda: d.client.show(wide).get("expected_start"), what="a reservation for the wide job")
    shown = d.rade("show", str(wide))
    assert shown.returncode == 0, shown.stderr
    assert "expected start" in shown.stdout
    started = d.client.show(busy)["started_at"]
    assert abs(d.client.show(wide)["expected_start"] - (started + 60)) < 1.0
    cancel = d.rade("cancel", str(ids[0]))
    assert cancel.returncode == 0, cancel.stderr
    wait_until(lambda: all(d.client.show(i)["state"] == "CANCELLED" for i in ids), what="the array cancelled")
    d.rade("cancel", str(busy), str(wide))
