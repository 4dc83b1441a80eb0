"""Drain, node failure, daemon restarts on a real 3-node dev cluster: work finishes or moves, and never
runs twice at once. Jobs append to a ledger on a bind volume every container of the cluster shares."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from engine.network.testhost import cut_test_host, reconnect_test_host
from rade import devcluster

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def ledger(cluster):
    path = cluster.files / f"ledger-{os.urandom(4).hex()}"
    path.mkdir()
    (path / "ledger").touch()
    return path


def logging_job(ledger, seconds: float) -> list[str]:
    return ["sh", "-c", f'echo "$RADE_JOB_ID $RADE_NODE" >> /ledger/ledger; sleep {seconds}']


def entries(ledger) -> list[tuple[int, str]]:
    return [(int(a), b) for a, b in (line.split() for line in (ledger / "ledger").read_text().splitlines())]


def current(shown: dict) -> dict:
    """The job's task 0 in its current attempt (`show` lists the earlier attempts too)."""
    return next(t for t in shown["tasks"] if t["attempt"] == shown["attempt"] and t["task"] == 0)


def task_node(cluster, job: int) -> str:
    return current(cluster.show(job))["node"]


def test_a_drained_node_finishes_its_work_and_gets_no_new_tasks(cluster):
    running = cluster.submit(name="busy", command=["sleep", "3"], placement={"constraints": {"disk": "ssd"}})
    cluster.wait_running(running)
    assert "node3: " in cluster.rade("drain", "node3", "--reason", "disk swap").stdout
    assert cluster.nodes()["node3"]["state"] == "DRAINING"
    waiting = cluster.submit(name="later", command=["true"], placement={"constraints": {"disk": "ssd"}})
    assert cluster.wait_state(running, "COMPLETED")
    cluster.wait_for("node3 DRAINED", lambda: cluster.nodes()["node3"]["state"] == "DRAINED")
    shown = cluster.show(waiting)
    assert shown["state"] == "PENDING" and not shown["tasks"]
    cluster.rade("resume", "node3")
    assert {t["node"] for t in cluster.wait_state(waiting, "COMPLETED")["tasks"]} == {"node3"}
    assert cluster.nodes()["node3"]["state"] == "IDLE"


def test_drain_with_a_deadline_requeues_the_work_elsewhere(cluster, ledger):
    job = cluster.submit(name="moved", command=logging_job(ledger, 60), volumes=[f"{ledger}:/ledger"])
    cluster.wait_running(job)
    first = task_node(cluster, job)
    cluster.rade("drain", first, "--reason", "maintenance", "--deadline", "1s")

    def moved() -> bool:
        shown = cluster.show(job)
        return shown["attempt"] >= 1 and shown["state"] == "RUNNING" and current(shown)["node"] != first
    cluster.wait_for("the job to run again on another node", moved)
    cluster.wait_for(f"{first} DRAINED", lambda: cluster.nodes()[first]["state"] == "DRAINED")
    assert [node for _, node in entries(ledger)] == [first, task_node(cluster, job)]
    cluster.rade("resume", first)


def test_a_killed_agent_and_cut_link_make_the_node_down_and_its_job_move_then_the_old_copy_is_killed(
        cluster, ledger):
    job = cluster.submit(name="survivor", command=logging_job(ledger, 120), volumes=[f"{ledger}:/ledger"])
    cluster.wait_running(job)
    lost = task_node(cluster, job)
    state = cluster.state()
    node = cluster.node(lost)
    os.kill(node.agent.pid, signal.SIGKILL)
    cluster.wait_for("the agent to die", lambda: not devcluster.is_alive(node.agent))
    host = devcluster.host_of(state, node)
    cut_test_host(host)
    try:
        cluster.wait_for(f"{lost} DOWN", lambda: cluster.nodes()[lost]["state"] == "DOWN")

        def moved() -> bool:
            shown = cluster.show(job)
            return shown["attempt"] >= 1 and shown["state"] == "RUNNING" and current(shown)["node"] != lost
        cluster.wait_for("the job to run again on another node", moved)
        # The first copy still runs on the cut-off node: its agent is gone, its container is not.
        assert [f.attempt for f in cluster.task_files(lost)] == [0]
    finally:
        reconnect_test_host(host)
        devcluster.restart(str(cluster.root), nodes=(lost,))
    cluster.wait_for(f"{lost} back", lambda: cluster.nodes()[lost]["state"] != "DOWN")
    cluster.wait_for("the old copy to be killed", lambda: not cluster.task_files(lost))
    names = {c for c in os.listdir(cluster.root / "containers") if len(c) == 64}
    assert len(names) == 1  # only the new attempt's container is left
    shown = cluster.show(job)
    assert shown["state"] == "RUNNING" and shown["attempt"] >= 1
    assert len(entries(ledger)) == 2


def test_a_restarted_agent_adopts_the_running_container(cluster):
    job = cluster.submit(name="adopted", command=["sh", "-c", "sleep 4; exit 7"])
    cluster.wait_running(job)
    name = task_node(cluster, job)
    devcluster.stop_process(cluster.node(name).agent)
    assert cluster.show(job)["state"] == "RUNNING"
    devcluster.restart(str(cluster.root), nodes=(name,))
    shown = cluster.wait_state(job, {"FAILED", "COMPLETED", "NODE_FAIL"})
    assert shown["state"] == "FAILED" and shown["exit_code"] == 7 and shown["attempt"] == 0
    log = (cluster.root / "cluster" / f"{name}.log").read_text()
    assert f"job {job} task 0 attempt 0: adopting container" in log


def test_a_scheduler_killed_with_jobs_queued_and_running_restarts_with_all_of_them_and_none_runs_twice(
        cluster, ledger):
    volume = [{"source": str(ledger), "target": "/ledger", "read_only": False}]
    running = cluster.submit_many([{"name": f"r{i}", "command": logging_job(ledger, 6), "volumes": volume}
                                   for i in range(6)])
    for job in running:
        cluster.wait_running(job)
    queued = cluster.submit_many([{"name": f"q{i}", "command": logging_job(ledger, 0.1), "volumes": volume}
                                  for i in range(50)])
    scheduler = cluster.state().scheduler
    os.kill(scheduler.pid, signal.SIGKILL)
    cluster.wait_for("the scheduler to die", lambda: not devcluster.is_alive(scheduler))
    devcluster.restart(str(cluster.root), scheduler=True)
    assert {j["id"] for j in json.loads(cluster.rade("queue", "--all", "--json").stdout)} >= set(running + queued)
    for job in running + queued:
        assert cluster.wait_state(job, {"COMPLETED", "FAILED", "NODE_FAIL", "CANCELLED"}, timeout=120)["state"] \
            == "COMPLETED"
    counts = Counter(job for job, _ in entries(ledger))
    assert counts == Counter({job: 1 for job in running + queued})
