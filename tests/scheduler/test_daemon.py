"""The scheduler daemon with simulated agents over ZeroMQ on 127.0.0.1, driven through the `rade` command
and the client library: jobs run, gangs land at once, drains and deadlines, a node that goes silent and
comes back fenced, a SIGKILLed scheduler that loses nothing and runs nothing twice, garbage on the wire."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import zmq

from .daemons import wait_until

pytestmark = pytest.mark.slow


def write_job(tmp_path, name: str, command: list[str], **extra) -> str:
    import yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "image": "busybox", "command": command,
                                    "resources": {"cpus": 1, "memory": "256M"}, **extra}))
    return str(path)


def job_state(daemons, job_id: int) -> str:
    return daemons.client.show(job_id)["state"]


def test_submit_wait_exits_with_the_jobs_exit_code(daemons, tmp_path):
    daemons.start_agents("n", 1)
    ok = daemons.rade("submit", write_job(tmp_path, "ok", ["sleep", "0.2"]), "--wait")
    assert ok.returncode == 0, ok.stderr
    failing = daemons.rade("submit", write_job(tmp_path, "bad", ["sh", "-c", "sleep 0.1; exit 3"]), "--wait")
    assert failing.returncode == 3
    assert "FAILED" in failing.stderr


def test_four_task_job_is_placed_across_nodes_at_once(daemons, tmp_path):
    daemons.start_agents("n", 3, cpus=2)
    out = daemons.rade("submit", write_job(tmp_path, "gang", ["sleep", "30"], tasks=4), "--json")
    [job] = json.loads(out.stdout)["jobs"]
    wait_until(lambda: job_state(daemons, job) == "RUNNING", what="the gang to run")
    tasks = daemons.client.show(job)["tasks"]
    assert len(tasks) == 4 and {t["state"] for t in tasks} == {"RUNNING"}
    assert len({t["node"] for t in tasks}) == 2
    assert re.search(rf"job {job} attempt 0: placed on n001,n002", daemons.log("scheduler"))


def test_drained_node_finishes_its_work_takes_no_more_and_resumes(daemons, tmp_path):
    daemons.start_agents("n", 1, cpus=1)
    [first] = daemons.client.submit(_spec(tmp_path, "first", ["sleep", "1.5"]))
    wait_until(lambda: job_state(daemons, first) == "RUNNING", what="the first job to run")
    assert daemons.rade("drain", "n001", "--reason", "bios update").returncode == 0
    [second] = daemons.client.submit(_spec(tmp_path, "second", ["sleep", "0.1"]))
    wait_until(lambda: daemons.client.show(second)["reason"] == "NodesDrained", what="reason NodesDrained")
    assert daemons.client.nodes()[0]["state"] == "DRAINING"
    assert daemons.client.wait(first)["state"] == "COMPLETED"
    wait_until(lambda: daemons.client.nodes()[0]["state"] == "DRAINED", what="DRAINED")
    assert job_state(daemons, second) == "PENDING"
    assert daemons.rade("resume", "n001").returncode == 0
    assert daemons.client.wait(second)["state"] == "COMPLETED"


def test_drain_deadline_stops_and_requeues_running_work(daemons, tmp_path):
    daemons.start_agents("n", 2, cpus=1)
    [job] = daemons.client.submit(_spec(tmp_path, "long", ["sleep", "3"]))
    wait_until(lambda: job_state(daemons, job) == "RUNNING", what="the job to run")
    node = daemons.client.show(job)["tasks"][0]["node"]
    assert daemons.rade("drain", node, "--reason", "reboot", "--deadline", "1s").returncode == 0
    wait_until(lambda: daemons.client.show(job)["attempt"] == 1, what="the requeue")
    assert daemons.client.wait(job)["state"] == "COMPLETED"
    tasks = daemons.client.show(job)["tasks"]
    assert [(t["attempt"], t["state"]) for t in tasks] == [(0, "CANCELLED"), (1, "COMPLETED")]
    assert tasks[1]["node"] != node


def test_silent_node_goes_down_job_requeued_elsewhere_old_copy_killed_on_return(daemons, tmp_path):
    first = daemons.start_agents("a", 1, cpus=1)
    daemons.start_agents("b", 1, cpus=1)
    [job] = daemons.client.submit(_spec(tmp_path, "survivor", ["sleep", "4"]))
    wait_until(lambda: job_state(daemons, job) == "RUNNING", what="the job to run")
    assert daemons.client.show(job)["tasks"][0]["node"] == "a001"
    os.kill(first.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: {n["name"]: n["state"] for n in daemons.client.nodes()}["a001"] == "DOWN",
                   what="a001 DOWN")
        wait_until(lambda: [t["node"] for t in daemons.client.show(job)["tasks"] if t["attempt"] == 1] == ["b001"],
                   what="the job on b001")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    wait_until(lambda: f"killing job {job} task 0 attempt 0 (fenced" in daemons.log("agents-a"),
               what="the old copy to be fenced")
    assert daemons.client.wait(job)["state"] == "COMPLETED"


def test_scheduler_sigkilled_with_jobs_queued_and_running_loses_none_and_runs_none_twice(daemons, tmp_path):
    daemons.start_agents("n", 2, cpus=2)
    ids = daemons.client.submit_many([_spec(tmp_path, f"j{i}", ["sleep", "0.8"]) for i in range(12)])
    wait_until(lambda: sum(r["state"] == "RUNNING" for r in daemons.client.queue()) == 4, what="4 running")
    daemons.kill(daemons.scheduler, signal.SIGKILL)
    daemons.start_scheduler()
    assert sorted(r["id"] for r in daemons.client.queue(include_ended=True)) == ids
    for job in ids:
        assert daemons.client.wait(job)["state"] == "COMPLETED"
    runs = re.findall(r"job (\d+) task 0 attempt (\d+) runs", daemons.log("agents-n"))
    assert sorted(int(j) for j, _ in runs) == ids, "a job ran twice, or not at all"


def test_garbage_on_both_sockets_leaves_the_daemon_serving(daemons):
    daemons.start_agents("n", 1)
    context = zmq.Context()
    try:
        for port in (daemons.agents_port, daemons.clients_port):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://127.0.0.1:{port}")
            for frames in ([b"\xc1"], [b"x" * 100_000], [b"", b"", b"", b""], [b"1", b"\x93\x01\x02\x03"],
                           [b"1", b'\x82\xa1v\x01\xa1t\xa6submit'], [os.urandom(64)], [b"7", os.urandom(512)]):
                sock.send_multipart(frames)
            sock.close(0)
        raw = context.socket(zmq.STREAM)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(f"tcp://127.0.0.1:{daemons.clients_port}")
        peer = raw.recv()  # the connect notification carries the peer id
        raw.recv()
        raw.send_multipart([peer, os.urandom(300)])
        raw.close(0)
    finally:
        context.term()
    assert [n["name"] for n in daemons.client.nodes()] == ["n001"]
    assert daemons.scheduler.poll() is None


def test_json_output_parses(daemons, tmp_path):
    daemons.start_agents("n", 1)
    out = daemons.rade("submit", write_job(tmp_path, "j", ["sleep", "0.1"]), "--json", "--wait")
    result = json.loads(out.stdout)
    job = result["jobs"][0]
    assert result["ended"][0]["state"] == "COMPLETED"
    assert json.loads(daemons.rade("queue", "--all", "--json").stdout)[0]["id"] == job
    assert json.loads(daemons.rade("show", str(job), "--json").stdout)["state"] == "COMPLETED"
    assert json.loads(daemons.rade("nodes", "--json").stdout)[0]["name"] == "n001"


def test_unreachable_scheduler_is_one_clear_error(tmp_path):
    import subprocess
    import sys

    from .daemons import free_port

    out = subprocess.run([sys.executable, "-m", "rade", "--root", str(tmp_path), "queue", "--scheduler",
                          f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ})
    assert out.returncode == 125
    assert out.stderr.startswith("rade: error: no answer from the scheduler") and "Traceback" not in out.stderr


def _spec(tmp_path, name: str, command: list[str], **extra) -> dict:
    from jobs.loader import load_spec

    return load_spec(write_job(tmp_path, name, command, **extra)).to_dict()
